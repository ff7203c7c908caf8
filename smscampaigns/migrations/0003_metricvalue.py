from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("smscampaigns", "0002_apikey_scopes"),
    ]

    operations = [
        migrations.CreateModel(
            name="MetricValue",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                (
                    "labels",
                    models.CharField(
                        blank=True,
                        help_text="The label pairs, as sorted JSON.",
                        max_length=255,
                    ),
                ),
                ("shard", models.PositiveSmallIntegerField(default=0)),
                ("value", models.FloatField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("name", "labels", "shard"), name="metricvalue_unique"
                    )
                ],
            },
        ),
    ]
