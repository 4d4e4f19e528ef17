from tqctl.cli import main

main()
