"""Self-contained HTML reports with PNG plots: why each tensor got its scale, and what it cost."""
