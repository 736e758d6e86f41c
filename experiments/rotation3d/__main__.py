"""python -m experiments.rotation3d --config default|smoke --workdir DIR"""

from experiments.common import use_host_devices

use_host_devices()  # before jax is imported

from experiments.common import main  # noqa: E402
from experiments.rotation3d.configs import CONFIGS  # noqa: E402
from experiments.rotation3d.run import plot, run  # noqa: E402

if __name__ == "__main__":
    main("rotation3d", CONFIGS, run, plot)
