"""Finding 2: deleting an opted-out contact through the API, or changing its number,
freed the number: a contact created for it again was textable."""

import pytest

from contacts.models import Contact, Suppression
from contacts.services import SuppressionProtected, contact_opt_in, contact_opt_out
from smscampaigns.models import Scope
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NUMBER = "+14155550123"


@pytest.fixture
def opted_out():
    contact = ContactFactory(phone=NUMBER)
    contact_opt_out(phone=NUMBER, source="keyword", text="STOP")
    return Contact.objects.get(pk=contact.pk)


def reachable(phone: str) -> bool:
    return Contact.objects.reachable().filter(phone=phone).exists()


def test_api_delete_then_create_keeps_the_number_suppressed(opted_out, key_api):
    api = key_api(Scope.READ, Scope.WRITE_CONTACTS)
    assert api.delete(f"/api/v1/contacts/{opted_out.pk}/").status_code == 204
    assert api.post("/api/v1/contacts/", {"phone": NUMBER}).status_code == 201
    assert not reachable(NUMBER)
    assert Suppression.objects.get(phone=NUMBER).reason == "opt_out"


def test_api_phone_change_keeps_the_old_number_suppressed(opted_out, key_api):
    api = key_api(Scope.READ, Scope.WRITE_CONTACTS)
    response = api.patch(f"/api/v1/contacts/{opted_out.pk}/", {"phone": "+14155550124"})
    assert response.status_code == 200
    assert api.post("/api/v1/contacts/", {"phone": NUMBER}).status_code == 201
    assert not reachable(NUMBER)
    # The person opted out: their contact stays opted out under the new number.
    assert Contact.objects.get(pk=opted_out.pk).opted_out


@pytest.mark.parametrize(
    "forget",
    [
        lambda c: c.delete(),
        lambda c: Contact.objects.filter(pk=c.pk).delete(),
        lambda c: Contact.objects.filter(pk=c.pk).update(phone="+14155550125"),
        lambda c: (setattr(c, "phone", "+14155550125"), c.save()),
    ],
    ids=["instance.delete", "queryset.delete", "queryset.update", "instance.save"],
)
def test_shell_paths_keep_the_opt_out_too(opted_out, forget):
    forget(opted_out)
    ContactFactory(phone=NUMBER)
    assert not reachable(NUMBER)


def test_an_opt_out_suppression_is_lifted_only_by_an_opt_in():
    contact_opt_out(phone=NUMBER, source="keyword")  # no contact: a suppression
    suppression = Suppression.objects.get(phone=NUMBER)
    with pytest.raises(SuppressionProtected):
        suppression.delete()
    with pytest.raises(SuppressionProtected):
        Suppression.objects.all().delete()
    with pytest.raises(SuppressionProtected):
        Suppression.objects.all().update(reason="manual")
    assert Suppression.objects.filter(phone=NUMBER).exists()

    contact_opt_in(phone=NUMBER, source="keyword", text="START")
    assert not Suppression.objects.filter(phone=NUMBER).exists()


def test_other_suppressions_can_still_be_deleted():
    Suppression.objects.create(phone="+14155550126", reason="manual")
    assert Suppression.objects.all().delete()[0] == 1
