"""python -m experiments.segmentation --config default|smoke --workdir DIR"""

from experiments.common import use_host_devices

use_host_devices()  # before jax is imported

from experiments.common import main  # noqa: E402
from experiments.segmentation.configs import CONFIGS  # noqa: E402
from experiments.segmentation.run import plot, run  # noqa: E402

if __name__ == "__main__":
    main("segmentation", CONFIGS, run, plot)
