"""Stage adapters: read the profile, call a pure core, write artifacts into ctx.out."""
