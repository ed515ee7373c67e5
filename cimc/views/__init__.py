"""Looking at a build: terminal views, placement maps (PNG/SVG), the HTML report and diffs."""
