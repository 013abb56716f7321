"""End-to-end validation with Playwright and Chromium: declared flows or the app's own suite."""
