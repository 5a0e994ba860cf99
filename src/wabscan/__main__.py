from wabscan.cli import main

main()
