"""Chart tier: the heliox Helm chart rendered, linted and validated offline."""
