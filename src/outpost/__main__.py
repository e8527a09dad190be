from outpost.cli import main

main()
