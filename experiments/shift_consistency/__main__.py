"""python -m experiments.shift_consistency --config default|smoke --workdir DIR"""

from experiments.common import use_host_devices

use_host_devices()  # before jax is imported

from experiments.common import main  # noqa: E402
from experiments.shift_consistency.configs import CONFIGS  # noqa: E402
from experiments.shift_consistency.run import plot, run  # noqa: E402

if __name__ == "__main__":
    main("shift_consistency", CONFIGS, run, plot)
