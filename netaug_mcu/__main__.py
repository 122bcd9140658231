"""`python -m netaug_mcu ...` (what torchrun and the tests launch) = the `netaug-mcu` command."""
import sys

from .cli import main

sys.exit(main())
