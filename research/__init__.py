"""Research notes and experiments; see README.md. ``research.tools`` holds the analysis tools."""
