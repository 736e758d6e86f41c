"""python -m experiments.scale --config default|smoke|full --workdir DIR"""

from experiments.common import use_host_devices

use_host_devices()  # before jax is imported

from experiments.common import main  # noqa: E402
from experiments.scale.configs import CONFIGS  # noqa: E402
from experiments.scale.run import plot, run  # noqa: E402

if __name__ == "__main__":
    main("scale", CONFIGS, run, plot)
