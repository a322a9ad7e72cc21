"""The lumbosacral radiculopathy pathway: its definition per version (``<version>.toml``) and
the record of the published ones (``published.toml``)."""
