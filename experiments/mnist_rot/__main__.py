"""python -m experiments.mnist_rot --config default|smoke|full --workdir DIR"""

from experiments.common import use_host_devices

use_host_devices()  # before jax is imported

from experiments.common import main  # noqa: E402
from experiments.mnist_rot.configs import CONFIGS  # noqa: E402
from experiments.mnist_rot.run import plot, run  # noqa: E402

if __name__ == "__main__":
    main("mnist_rot", CONFIGS, run, plot)
