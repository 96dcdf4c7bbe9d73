import sys

from m11_tenant.cli import main

sys.exit(main())
