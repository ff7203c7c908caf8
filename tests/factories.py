"""Factories for the project's models: set only what makes a row valid."""

import factory

from campaigns.models import Campaign, Message
from contacts.models import Contact, ContactList, ListMembership, SignupKeyword

_AREA_CODES = ["415", "212", "312", "206", "512", "617", "303", "404", "702", "808"]


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    # Exchange 555 in US area codes: valid for libphonenumber, 100,000 distinct numbers.
    phone = factory.Sequence(
        lambda n: f"+1{_AREA_CODES[(n // 10000) % 10]}555{n % 10000:04d}"
    )
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")


class ContactListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactList

    name = factory.Sequence(lambda n: f"List {n}")


class ListMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ListMembership

    contact_list = factory.SubFactory(ContactListFactory)
    contact = factory.SubFactory(ContactFactory)


class SignupKeywordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SignupKeyword

    contact_list = factory.SubFactory(ContactListFactory)
    keyword = factory.Sequence(lambda n: f"JOIN{n}")


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Campaign {n}")
    body = "Hi {first_name|there}!"
    # Tests compare exact texts; the footer has tests of its own.
    opt_out_footer = ""

    @factory.post_generation
    def lists(self, create, extracted, **kwargs):
        if create and extracted:
            self.lists.add(*extracted)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    campaign = factory.SubFactory(CampaignFactory)
    contact = factory.SubFactory(ContactFactory)
    to = factory.SelfAttribute("contact.phone")
    body = "Hi there!"
    provider = factory.SelfAttribute("campaign.provider")
