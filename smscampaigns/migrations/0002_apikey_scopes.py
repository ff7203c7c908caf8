from django.db import migrations, models


def grant_existing_keys_every_scope(apps, schema_editor):
    # Keys made before scopes existed could do everything; keep them working (an
    # operator narrows them in the admin).
    ApiKey = apps.get_model("smscampaigns", "ApiKey")
    ApiKey.objects.update(scopes=["read", "write_contacts", "send"])


class Migration(migrations.Migration):

    dependencies = [
        ("smscampaigns", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=models.JSONField(
                default=list,
                help_text="What the key may do: any of read, write_contacts, send.",
            ),
        ),
        migrations.RunPython(grant_existing_keys_every_scope, migrations.RunPython.noop),
    ]
