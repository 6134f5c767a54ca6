"""python -m novitai.cli"""

import sys

from novitai.cli import main

sys.exit(main())
