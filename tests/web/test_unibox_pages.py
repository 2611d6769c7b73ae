import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lines.services import line_create
from messaging.inbound import inbound_record
from messaging.models import Conversation, InboundMessage, Message
from messaging.services import dnc_add


@pytest.fixture
def line(acme):
    return line_create(
        workspace=acme, server_url="https://mac.acme.test", relay_password="pw", first_name="Ava"
    )


def outbound(workspace, line, phone, body, status="delivered"):
    return Message.objects.create(
        workspace=workspace,
        line=line,
        recipient_phone=phone,
        sent_address=phone,
        body=body,
        rendered_body=body,
        status=status,
        sent_at=timezone.now(),
    )


def reply_from(workspace, line, phone, text):
    inbound_record(workspace=workspace, address=phone, text=text, channel="imessage", line=line)
    return Conversation.objects.get(workspace=workspace, address=phone)


def test_it_lists_conversations_with_unread_counts(acme, line, alice_client):
    outbound(acme, line, "+12025550101", "Hi Dana")
    reply_from(acme, line, "+12025550101", "Who is this?")
    reply_from(acme, line, "+12025550101", "Hello?")
    conversation = Conversation.objects.get(address="+12025550101")
    page = alice_client.get("/unibox/").content.decode()
    item = page.split(f'id="conversation-{conversation.pk}"')[1].split("</li>")[0]
    assert 'aria-label="2 unread"' in item
    assert "Hello?" in item
    assert "is-unread" in page


def test_opening_a_thread_shows_both_directions_and_marks_it_read(acme, line, alice_client):
    sent = outbound(acme, line, "+12025550101", "Hi Dana", status="delivered")
    failed = outbound(acme, line, "+12025550101", "Second try", status="failed")
    conversation = reply_from(acme, line, "+12025550101", "Who is this?")
    page = alice_client.get(f"/unibox/{conversation.pk}/").content.decode()
    thread = page.split('id="thread"')[1].split("</ol>")[0]
    assert f'id="msg-{sent.pk}"' in thread
    assert 'data-status="delivered"' in thread
    assert f'id="msg-{failed.pk}"' in thread and 'data-status="failed"' in thread
    assert "msg-inbound" in thread and "Who is this?" in thread
    assert "Ava" in thread  # the line it went from
    assert thread.index("Hi Dana") < thread.index("Who is this?")
    conversation.refresh_from_db()
    assert conversation.unread_count == 0
    assert not InboundMessage.objects.filter(is_read=False).exists()
    assert 'aria-label="1 unread"' not in page


def test_reply_queues_a_message_from_the_conversations_line(acme, line, alice_client):
    other = line_create(workspace=acme, server_url="https://mac2.acme.test", relay_password="pw")
    outbound(acme, line, "+12025550101", "Hi Dana")
    conversation = reply_from(acme, line, "+12025550101", "Tell me more")
    response = alice_client.post(
        f"/unibox/{conversation.pk}/reply/", {"message": "Happy to!"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    pane = response.content.decode()
    assert pane.startswith('<section class="thread-pane" id="thread-pane"')
    assert "Happy to!" in pane
    assert "Happy to!</textarea>" not in pane
    message = Message.objects.get(body="Happy to!")
    assert message.line == line and message.line != other
    assert message.recipient_phone == "+12025550101"


def test_reply_errors_show_in_the_reply_box_and_keep_the_text(acme, line, alice_client):
    conversation = reply_from(acme, None, "+12025550101", "Hi from nowhere")
    response = alice_client.post(
        f"/unibox/{conversation.pk}/reply/", {"message": "Still here"}, HTTP_HX_REQUEST="true"
    )
    pane = response.content.decode()
    assert "No active line has talked to this recipient yet" in pane
    assert "Still here</textarea>" in pane
    response = alice_client.post(
        f"/unibox/{conversation.pk}/reply/", {"message": "   "}, HTTP_HX_REQUEST="true"
    )
    assert "Write a message first." in response.content.decode()
    assert not Message.objects.exists()


def test_opted_out_recipient_is_marked_and_cannot_be_answered(acme, line, alice_client):
    outbound(acme, line, "+12025550101", "Hi Dana")
    conversation = reply_from(acme, line, "+12025550101", "STOP")
    page = alice_client.get(f"/unibox/{conversation.pk}/").content.decode()
    assert "Opted out" in page
    assert "opted out or is on the do-not-contact list" in page
    response = alice_client.post(f"/unibox/{conversation.pk}/reply/", {"message": "Sorry"})
    assert b"do-not-contact" in response.content
    assert not Message.objects.filter(body="Sorry").exists()


def test_dnc_entry_marks_the_conversation(acme, line, alice_client):
    outbound(acme, line, "+12025550102", "Hi Eve")
    conversation = reply_from(acme, line, "+12025550102", "Thanks")
    dnc_add(workspace=acme, phone="+12025550102")
    page = alice_client.get("/unibox/").content.decode()
    item = page.split(f'id="conversation-{conversation.pk}"')[1].split("</li>")[0]
    assert "Opted out" in item


def test_it_never_shows_another_workspaces_conversations(acme, globex, line, alice_client):
    theirs = line_create(workspace=globex, server_url="https://g.test", relay_password="pw")
    conversation = reply_from(globex, theirs, "+12025550199", "Globex secret")
    assert b"Globex secret" not in alice_client.get("/unibox/").content
    assert alice_client.get(f"/unibox/{conversation.pk}/").status_code == 404
    assert alice_client.get(f"/unibox/{conversation.pk}/thread/").status_code == 404
    response = alice_client.post(f"/unibox/{conversation.pk}/reply/", {"message": "x"})
    assert response.status_code == 404
    # Looking a foreign recipient up by address finds nothing either.
    assert alice_client.get("/unibox/+12025550199/").status_code == 404
    conversation.refresh_from_db()
    assert conversation.unread_count == 1
    assert not Message.objects.exists()


def test_list_runs_a_fixed_number_of_queries(acme, line, alice_client, django_assert_num_queries):
    reply_from(acme, line, "+12025550100", "One")
    alice_client.get("/unibox/")
    with CaptureQueriesContext(connection) as one:
        alice_client.get("/unibox/")
    for i in range(1, 8):
        reply_from(acme, line, f"+1202555{100 + i:04d}", f"Reply {i}")
    with django_assert_num_queries(len(one.captured_queries)):
        page = alice_client.get("/unibox/").content.decode()
    assert page.count('id="conversation-') == 8


def test_thread_refresh_returns_the_messages(acme, line, alice_client):
    conversation = reply_from(acme, line, "+12025550101", "Ping")
    response = alice_client.get(f"/unibox/{conversation.pk}/thread/", HTTP_HX_REQUEST="true")
    assert response.content.decode().startswith('<ol class="thread" id="thread"')
    assert b"Ping" in response.content


def test_unread_filter(acme, line, alice_client):
    read = reply_from(acme, line, "+12025550101", "Old news")
    alice_client.get(f"/unibox/{read.pk}/")
    unread = reply_from(acme, line, "+12025550102", "Fresh")
    page = alice_client.get("/unibox/?unread=1").content.decode()
    assert f'id="conversation-{unread.pk}"' in page
    assert f'id="conversation-{read.pk}"' not in page
