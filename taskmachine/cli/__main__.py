"""`python -m taskmachine.cli …` = `tama …` (what the startup service runs)."""

from taskmachine.cli.app import main

main()
