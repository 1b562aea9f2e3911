from ultramn.cli import main

main()
