from broker.cli.main import app

app(prog_name="nhi-broker")
