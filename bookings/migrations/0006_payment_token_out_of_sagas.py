"""Payment tokens are read from the booking when the step runs: remove the copies that earlier
versions kept in saga payloads and in pre-authorization attempts' requests."""

from django.db import migrations


def forget_token_copies(apps, schema_editor):
    Saga = apps.get_model("sagas", "Saga")
    SagaStep = apps.get_model("sagas", "SagaStep")
    sagas = Saga.objects.filter(saga_type="booking").only("id", "payload")
    for saga in sagas.iterator(chunk_size=2000):
        if "payment_token" in (saga.payload or {}):
            saga.payload.pop("payment_token")
            Saga.objects.filter(pk=saga.pk).update(payload=saga.payload)
    attempts = SagaStep.objects.filter(name="preauthorize").only("id", "request")
    for step in attempts.iterator(chunk_size=2000):
        if "token" in (step.request or {}):
            step.request.pop("token")
            SagaStep.objects.filter(pk=step.pk).update(request=step.request)


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0005_booking_reference_constraint"),
        ("sagas", "0005_saga_target_plain_index"),
    ]

    operations = [migrations.RunPython(forget_token_copies, migrations.RunPython.noop)]
