"""Targets and experiments belong to a team; rows that existed before go to the default
team (``governance.models.DEFAULT_TEAM``), which global role holders act in."""

import django.db.models.deletion
from django.db import migrations, models

import governance.models


def to_default_team(apps, schema_editor):
    Team = apps.get_model("governance", "Team")
    team, _ = Team.objects.get_or_create(name=governance.models.DEFAULT_TEAM)
    apps.get_model("experiments", "Target").objects.filter(team__isnull=True).update(team=team)
    Experiment = apps.get_model("experiments", "Experiment")
    for experiment in Experiment.objects.filter(team__isnull=True).select_related("target"):
        experiment.team_id = experiment.target.team_id
        experiment.save(update_fields=["team"])


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0004_run_approval"),
        ("governance", "0002_teams"),
    ]

    operations = [
        migrations.AddField(
            model_name="target",
            name="team",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="targets", to="governance.team"),
        ),
        migrations.AddField(
            model_name="experiment",
            name="team",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="experiments", to="governance.team"),
        ),
        migrations.RunPython(to_default_team, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="experiment",
            name="team",
            field=models.ForeignKey(default=governance.models.default_team_id, help_text="always its target's team (set by the catalog service)", on_delete=django.db.models.deletion.PROTECT, related_name="experiments", to="governance.team"),
        ),
        migrations.AlterField(
            model_name="target",
            name="team",
            field=models.ForeignKey(default=governance.models.default_team_id, help_text="who owns it; users act only within their teams", on_delete=django.db.models.deletion.PROTECT, related_name="targets", to="governance.team"),
        ),
    ]
