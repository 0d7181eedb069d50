"""What a notification says, in English or Chinese (AIO_UI_LANG): built from an alert's facts, never from the
message itself unless an administrator turned on "include the text" for that channel.

By default a notice carries the level, the category, the group, the time, the alert's number and a link to the
dashboard, where the reader signs in and sees what their role allows. No name and no message: an e-mail is copied to
servers, phones and backups that the school does not control, and a webhook post lands in a chat channel that more
people read than the counsellor who should. Digests carry counts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from db.digests import GroupDigest
from db.outbox import AlertFacts
from db.rules import negative_share

CATEGORY = {"self-harm": {"en": "self-harm", "zh": "自伤/自杀"},
            "harm-to-others": {"en": "harm to others", "zh": "伤害他人"},
            "abuse": {"en": "abuse", "zh": "虐待"}, "bullying": {"en": "bullying", "zh": "霸凌"}}
LEVEL = {"urgent": {"en": "urgent", "zh": "紧急"}, "concern": {"en": "possible risk", "zh": "可能有风险"}}

TEXT = {
    "subject": {"en": "Risk alert #{id} in {group}: {level}", "zh": "{group} 风险预警 #{id}：{level}"},
    "subject_escalated": {"en": "Not yet acknowledged: urgent risk alert #{id} in {group}",
                          "zh": "尚无人确认：{group} 的紧急风险预警 #{id}"},
    "opening": {"en": "A student's message was assessed as {level} ({category}). Please look at it on the dashboard "
                      "and acknowledge the alert.",
                "zh": "一名学生的消息被评估为{level}（{category}）。请在仪表板上查看并确认此预警。"},
    "escalated": {"en": "Nobody acknowledged it in {minutes} minutes, so it now comes to you.",
                  "zh": "{minutes} 分钟内无人确认，因此现在转给你。"},
    "facts": {"en": "Alert:    #{id}\nLevel:    {level}\nCategory: {category}\nGroup:    {group}\nRaised:   {at}\n"
                    "Open it:  {link} (Trends & alerts, alert #{id}; sign in first)",
              "zh": "预警：#{id}\n级别：{level}\n类别：{category}\n班级：{group}\n时间：{at}\n"
                    "查看：{link}（趋势与预警，预警 #{id}；请先登录）"},
    "why": {"en": "You receive this as {reason}.", "zh": "你收到此通知的身份：{reason}。"},
    "private": {"en": "For the student's privacy, their name and message are not in this e-mail; read them on the "
                      "dashboard.",
                "zh": "为保护学生隐私，本邮件不含其姓名和消息内容；请在仪表板上查看。"},
    "with_text": {"en": "The message (included because an administrator turned this on; it now also sits in every "
                        "mailbox and backup this e-mail reaches):\n\n{text}",
                  "zh": "消息内容（管理员已开启附带原文；它现在也存在于这封邮件到达的所有邮箱和备份中）：\n\n{text}"},
    "no_group": {"en": "no group", "zh": "未分班"},
    "digest_subject": {"en": "{frequency} digest for {groups}, {start} to {end}",
                       "zh": "{groups} 的{frequency}摘要：{start} 至 {end}"},
    "daily": {"en": "Daily", "zh": "每日"}, "weekly": {"en": "Weekly", "zh": "每周"},
    "digest_line": {"en": "{group}: {messages} messages, {negatives} negative ({share}); {new} new sustained-"
                          "negativity alert(s), {open} open; {turned} person(s) whose trend turned negative.",
                    "zh": "{group}：{messages} 条消息，{negatives} 条负面（{share}）；新的持续负面预警 {new} 个，"
                          "未处理 {open} 个；情绪转向负面的 {turned} 人。"},
    "digest_open": {"en": "Who, and their messages, are on the dashboard: {link}",
                    "zh": "具体是谁及其消息请在仪表板上查看：{link}"},
    "digest_private": {"en": "This digest holds counts only, for your groups only.",
                       "zh": "本摘要只含你所负责班级的统计数字。"},
    "test_subject": {"en": "Test notification from the sentiment monitor", "zh": "情感监测的测试通知"},
    "test_body": {"en": "This is a test. If you read it, the monitor's e-mail notifications reach you.\n"
                        "Dashboard: {link}",
                  "zh": "这是一条测试通知。能读到它，说明监测系统的邮件通知可以送达你。\n仪表板：{link}"},
}


def _t(key: str, lang: str, **values: object) -> str:
    entry = TEXT[key]
    return (entry.get(lang) or entry["en"]).format(**values)


def _when(moment: datetime) -> str:
    """A stored (naive UTC) time in this server's time zone, named."""
    return moment.replace(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def dashboard_link(base: str, page: str = "trends") -> str:
    return f"{base.rstrip('/')}/{page}"


@dataclass(frozen=True)
class Notice:
    """One alert notice as it is sent: to whom (why), which step, and whether the message text goes with it."""

    facts: AlertFacts
    key: str
    step: int
    reason: str
    link: str
    lang: str = "en"

    def _words(self) -> dict[str, object]:
        f = self.facts
        return {"id": f.alert_id, "group": f.group or _t("no_group", self.lang),
                "level": LEVEL.get(f.severity or "", {}).get(self.lang, f.severity or "?"),
                "category": CATEGORY.get(f.category or "", {}).get(self.lang, f.category or "?"),
                "at": _when(f.raised_at), "link": self.link}

    def email(self, minutes: int) -> tuple[str, str]:
        """The subject and plain-text body."""
        words = self._words()
        subject = _t("subject_escalated" if self.step else "subject", self.lang, **words)
        parts = [_t("opening", self.lang, **words)]
        if self.step:
            parts.append(_t("escalated", self.lang, minutes=minutes))
        parts += [_t("facts", self.lang, **words), _t("why", self.lang, reason=self.reason)]
        parts.append(_t("with_text", self.lang, text=self.facts.text) if self.facts.text is not None
                     else _t("private", self.lang))
        return subject, "\n\n".join(parts) + "\n"

    def payload(self) -> dict[str, object]:
        """The webhook's JSON: the facts as fields, and `text`, a one-line summary that Slack and Teams show.
        `message` (the student's text) only when included."""
        f, words = self.facts, self._words()
        summary = _t("subject_escalated" if self.step else "subject", self.lang, **words)
        data: dict[str, object] = {
            "id": self.key, "event": "escalation" if self.step else "alert", "alert": f.alert_id,
            "level": f.severity, "category": f.category, "group": f.group,
            "raised_at": f.raised_at.replace(tzinfo=UTC).isoformat(), "step": self.step, "to": self.reason,
            "link": self.link, "text": f"{summary} ({words['category']}): {self.link}"}
        if f.text is not None:
            data["message"] = f.text
        return data


def digest_email(digests: list[GroupDigest], *, frequency: str, start: datetime, end: datetime, link: str,
                 lang: str = "en") -> tuple[str, str]:
    """A teacher's digest: one line of counts per group of theirs."""
    subject = _t("digest_subject", lang, frequency=_t(frequency, lang), groups=", ".join(d.group for d in digests),
                 start=_when(start), end=_when(end))
    lines = [_t("digest_line", lang, group=d.group, messages=d.messages, negatives=d.negatives,
                share=f"{negative_share(d.negatives, d.labelled):.0%}" if d.labelled else "-", new=d.new_alerts,
                open=d.open_alerts, turned=d.turned) for d in digests]
    body = "\n".join(lines) + "\n\n" + _t("digest_open", lang, link=link) + "\n" + _t("digest_private", lang)
    return subject, body + "\n"


def trial_email(link: str, lang: str = "en") -> tuple[str, str]:
    return _t("test_subject", lang), _t("test_body", lang, link=link) + "\n"
