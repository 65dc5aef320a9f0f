"""`gonogo sandbox`: serve the GitHub sandbox alone, seeded from a scenario file."""

from __future__ import annotations

import os
from pathlib import Path

import click

BUNDLED = Path(__file__).resolve().parents[1] / "sandbox" / "scenarios" / "demo.yml"


@click.command()
@click.option("--scenario", "scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=BUNDLED, show_default="the bundled demo scenario", help="Scenario file (YAML or JSON).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, type=int, help="TCP port; 0 picks a free one.")
@click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds added to every call.")
@click.option("--write-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to save the app's private key when the scenario has none (for GONOGO_PRIVATE_KEY).")
def sandbox(scenario: Path, host: str, port: int, latency: float, write_key: Path | None) -> None:
    """Serve a stand-in for GitHub's REST API, seeded from SCENARIO, until interrupted."""
    from github_app.sandbox.scenario import ScenarioError
    from github_app.sandbox.server import _bind, _server
    from github_app.sandbox.state import SandboxState

    try:
        state = SandboxState.from_scenario(scenario)
    except (ScenarioError, KeyError, TypeError, ValueError) as exc:
        raise click.ClickException(f"Cannot load scenario {scenario}: {exc}") from None
    state.latency = latency
    sock = _bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    state.api_url = url
    app = state.app
    click.echo(f"GitHub sandbox on {url}  (scenario {scenario})")
    if app is not None:
        click.echo(f"  app id {app.id} ({app.slug}); installations: "
                   + ", ".join(f"{i.id}={i.account}" for i in state.installations.values()))
        if app.private_key_pem and write_key:
            write_key.write_text(app.private_key_pem)
            os.chmod(write_key, 0o600)
            click.echo(f"  generated app private key written to {write_key}")
        elif app.private_key_pem:
            click.echo("  the app key pair was generated; pass --write-key FILE to save the private key")
    click.echo(f"  repositories: {', '.join(r.full_name for r in state.iter_repos())}")
    server = _server(state, "warning")
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after shutting down; the summary still matters
        pass
    finally:
        sock.close()
        summary = state.call_summary()
        click.echo(f"{sum(summary.values())} calls served")
        for route, count in list(summary.items())[:20]:
            click.echo(f"  {count:5d}  {route}")
