"""``python -m pulse_bi.settings [--write]``: print or rewrite the docs' settings tables."""

from pulse_bi.settings.docs import main

raise SystemExit(main())
