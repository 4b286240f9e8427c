from co2logserver.cli import main

main()
