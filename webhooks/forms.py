from django import forms

from .services import MAX_REPLY_LENGTH


class ReplyForm(forms.Form):
    text = forms.CharField(
        label="Reply",
        max_length=MAX_REPLY_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Write a reply…"}),
    )
