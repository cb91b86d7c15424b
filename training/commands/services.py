"""``services``: where each service is and whether it answers, without printing credentials."""

from __future__ import annotations

import click


@click.command()
def services() -> None:
    """Resolve PostgreSQL, the online store and MLflow from the environment and check each answers."""
    from training.infra import settings

    pg = settings.check_postgres()
    click.echo(f"offline store : {pg.describe()}")
    redis = settings.check_redis()
    click.echo(f"online store  : {redis.describe() if redis else 'SQLite ' + settings.online_store_config()['path']}")
    click.echo(f"MLflow        : {settings.without_credentials(settings.check_mlflow())}")
