from maillage.cli.main import app

app()
