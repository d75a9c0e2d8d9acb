"""`python -m export.datasets`: see export.datasets.images."""
import sys

from export.datasets.images import main

sys.exit(main())
