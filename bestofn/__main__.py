from bestofn.cli import main

main()
