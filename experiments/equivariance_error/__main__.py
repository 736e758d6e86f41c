"""python -m experiments.equivariance_error --config default|smoke --workdir DIR"""

from experiments.common import use_host_devices

use_host_devices()  # before jax is imported

from experiments.common import main  # noqa: E402
from experiments.equivariance_error.configs import CONFIGS  # noqa: E402
from experiments.equivariance_error.run import plot, run  # noqa: E402

if __name__ == "__main__":
    main("equivariance_error", CONFIGS, run, plot)
