"""``python -m equilib.launch --processes N -- COMMAND ...``: run COMMAND as N processes of one
distributed JAX run on this machine (see :func:`equilib.distributed.launch`)."""

import sys

from equilib.distributed import main

if __name__ == "__main__":
    sys.exit(main())
