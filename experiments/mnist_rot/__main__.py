"""python -m experiments.mnist_rot --config default|smoke|full --workdir DIR"""

from experiments.common import use_host_devices

use_host_devices()  # before jax is imported

from experiments.common import main  # noqa: E402
from experiments.mnist_rot.configs import CONFIGS  # noqa: E402
from experiments.mnist_rot.run import keep_earlier, plot, run  # noqa: E402

if __name__ == "__main__":
    # one model and seed at a time into one workdir: results.json keeps the earlier pieces
    main("mnist_rot", CONFIGS, run, plot, finish=keep_earlier)
