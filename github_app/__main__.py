from github_app.cli import main

main()
