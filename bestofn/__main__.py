from bestofn.apps.cli.main import main

main()
