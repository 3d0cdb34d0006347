from mastofargate.cli import main

main()
