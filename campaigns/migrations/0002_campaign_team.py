"""Campaigns belong to a team; existing ones go to the default team
(``governance.models.DEFAULT_TEAM``), where every experiment they contain lives too
(migration ``experiments/0005``). Game days follow their campaign."""

import django.db.models.deletion
from django.db import migrations, models

import governance.models


def to_default_team(apps, schema_editor):
    Team = apps.get_model("governance", "Team")
    team, _ = Team.objects.get_or_create(name=governance.models.DEFAULT_TEAM)
    apps.get_model("campaigns", "Campaign").objects.filter(team__isnull=True).update(team=team)


class Migration(migrations.Migration):

    dependencies = [
        ("campaigns", "0001_campaigns_and_game_days"),
        ("governance", "0002_teams"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="team",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="campaigns", to="governance.team"),
        ),
        migrations.RunPython(to_default_team, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="campaign",
            name="team",
            field=models.ForeignKey(default=governance.models.default_team_id, help_text="who owns it; its experiments and game days belong to the same team", on_delete=django.db.models.deletion.PROTECT, related_name="campaigns", to="governance.team"),
        ),
    ]
