"""`python -m sat_tf.cli`: the `sat-tf` command."""

import sys

from sat_tf.cli import main

sys.exit(main())
