"""``python -m l2l_torch.pretrained [NAME]``: the shipped learned optimizers as a table, or one entry's metadata."""

import sys

from l2l_torch.pretrained import main

sys.exit(main())
