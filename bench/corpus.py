"""corpus: a labelled set of documents a Japanese care office sends, for detection_quality.py.

Each document is one piece of content (a care plan, a referral, a resident list, a holiday
list …) rendered into one format (mail body, Office file, PDF, scan, FAX, photo) and sent as
one mail. Its label, written from what the content holds and never from what a detector
finds, is the expected level (none / personal / sensitive) and the detector kinds that
ought to fire. Names, numbers, dates and wording are drawn from a random generator seeded
per document (``random.Random(f"2026-{id}")``), so every run and ``--quick`` build the same
documents. The renderers of tests/documents.py are reused where they fit.
"""

from __future__ import annotations

import csv
import html
import io
import random
import sys
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import documents as D  # noqa: E402

from mailguard.check.content.detect import my_number_check_digit  # noqa: E402  (only to make valid numbers)

SEED = 2026
SURNAMES = ("佐藤 鈴木 高橋 田中 伊藤 渡辺 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本 井上 木村 清水 山崎 池田 "
            "橋本 阿部 石川 前田 藤田 小川 岡田 後藤 長谷川 村上 近藤 坂本 遠藤 青木 西村 福田 太田 三浦 藤原 岡本 "
            "松田 中川 原田 小野 竹内 金子 和田 中山 石井 上田 森田 小島 柴田 宮崎 酒井 工藤 横山 宮本 内田 高木 "
            "安藤 島田 谷口 大野 丸山 今井 河野 藤本 村田 武田 上野 杉山 増田 大塚 平野 菅原 久保 松井 千葉 岩崎 "
            "桜井 木下 野口 松尾 菊地 野村 新井").split()
WOMEN = "ハル トメ キヨ ツル ウメ マツ フミ シズ ヨシ チヨ ミツ タケ ハナ キク スミ 静子 和子 幸子 節子 久子 文子 千代子 美代子 芳子 房子 光子 悦子 信子 敏子 とし子".split()
MEN = "正雄 清 茂 勇 実 博 進 三郎 次郎 一郎 武 昭 正一 義男 勝 隆 忠 弘 寛 徳治 金蔵 源一 重雄 辰夫".split()
YOUNGER = "健一 浩二 裕子 真理子 美香 和也 直美 誠 恵子 隆志".split()
PLACES = ("神奈川県藤沢市鵠沼海岸 神奈川県藤沢市辻堂元町 神奈川県茅ヶ崎市東海岸北 東京都世田谷区北沢 東京都練馬区石神井町 "
          "埼玉県川越市新富町 千葉県船橋市本町 大阪府堺市堺区中之町 愛知県名古屋市昭和区御器所 福岡県北九州市小倉北区京町").split()
BUILDINGS = ("", "", "", " サンハイツ201", " コーポ松風102", " 第2みどり荘3号室")
DISEASES = ("アルツハイマー型認知症 脳梗塞後遺症 2型糖尿病 高血圧症 慢性心不全 慢性腎不全 パーキンソン病 骨粗鬆症 "
            "大腿骨頸部骨折 変形性膝関節症 誤嚥性肺炎 慢性閉塞性肺疾患 腰部脊柱管狭窄症 うつ病 胃がん術後 レビー小体型認知症").split()
MEDS = ("アムロジピン錠5mg ドネペジル塩酸塩錠5mg メトホルミン塩酸塩錠250mg ワーファリン錠1mg 酸化マグネシウム錠330mg "
        "フロセミド錠20mg レボドパ・カルビドパ配合錠 ランソプラゾールOD錠15mg メマンチン塩酸塩錠10mg ロキソプロフェン錠60mg "
        "アレンドロン酸錠35mg インスリングラルギン").split()
DISABILITIES = ("身体障害者手帳 2級（右上下肢機能障害）", "身体障害者手帳 1級（心臓機能障害）", "身体障害者手帳 4級（聴覚障害）",
                "療育手帳 B1", "精神障害者保健福祉手帳 2級", "身体障害者手帳 3級（体幹機能障害）")
HOSPITALS = ("湘南中央病院", "みなと総合病院", "北沢クリニック", "市立川越医療センター", "船橋記念病院", "堺東病院")
OFFICES = ("居宅介護支援事業所さくら", "デイサービスひまわり", "訪問介護ステーションあおば", "グループホームつばき", "ケアプランセンターみどり")
CORPS = ("社会福祉法人さくら会", "医療法人社団緑風会", "株式会社ケアパートナーズ", "NPO法人ささえあい")
STAFF = ("田中 美咲", "鈴木 健太", "小林 由美", "伊藤 直樹", "渡辺 恵", "中村 彩")
EVENTS = ("夏祭り", "敬老会", "作品展", "介護教室「家庭でできる介護予防」", "認知症カフェ", "クリスマス会")
TOPICS = ("認知症ケアの基本", "感染症対策（ノロウイルス・インフルエンザ）", "褥瘡予防と体位変換", "服薬管理の基礎", "看取りケア",
          "腰痛予防と移乗介助", "高齢者虐待防止", "身体拘束廃止に向けて", "糖尿病のある方の食事と運動")
HOLIDAYS_2026 = ((1, 1, "元日"), (1, 12, "成人の日"), (2, 11, "建国記念の日"), (2, 23, "天皇誕生日"), (3, 20, "春分の日"),
                 (4, 29, "昭和の日"), (5, 3, "憲法記念日"), (5, 4, "みどりの日"), (5, 5, "こどもの日"), (5, 6, "振替休日"),
                 (7, 20, "海の日"), (8, 11, "山の日"), (9, 21, "敬老の日"), (9, 22, "国民の休日"), (9, 23, "秋分の日"),
                 (10, 12, "スポーツの日"), (11, 3, "文化の日"), (11, 23, "勤労感謝の日"))
WEEK = "月火水木金土日"


@dataclass
class Content:
    what: str                      # the kind of document, in Japanese
    level: str                     # expected: none / personal / sensitive
    kinds: set[str]                # detector kinds that ought to fire
    title: str = ""
    pairs: list[tuple[str, str]] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([self.title] if self.title else []) + [f"{k}：{v}" for k, v in self.pairs] \
            + ["　".join(row) for row in self.table] + self.notes


@dataclass
class Doc:
    id: str
    fmt: str
    what: str
    level: str
    kinds: frozenset[str]
    raw: bytes
    filename: str                  # of the attachment, or body.txt / body.html
    payload: bytes


# ---- people, numbers and dates ----

def name(rng: random.Random, given=None, honorific: bool = False) -> str:
    surname, given = rng.choice(SURNAMES), given or rng.choice(rng.choice((WOMEN, WOMEN, MEN)))
    joined = rng.choice((f"{surname} {given}", f"{surname} {given}", f"{surname}　{given}", f"{surname}{given}"))
    return joined + (" 様" if honorific else "")


def birth(rng: random.Random) -> tuple[str, int]:
    y, m, d = rng.randint(1924, 1945), rng.randint(1, 12), rng.randint(1, 28)
    era = f"昭和{y - 1925}年" if y >= 1926 else f"大正{y - 1911}年"
    text = rng.choice((f"{era}{m}月{d}日", f"{era}{m}月{d}日", f"{era} {m}月 {d}日", f"{y}年{m}月{d}日",
                       f"{y}/{m:02d}/{d:02d}", (f"S{y - 1925}.{m}.{d}" if y >= 1926 else f"T{y - 1911}.{m}.{d}")))
    return text, 2026 - y


def reiwa(rng: random.Random, year: int = 2026) -> str:
    day = date(year, rng.randint(1, 12), rng.randint(1, 28))
    return f"令和{year - 2018}年{day.month}月{day.day}日（{WEEK[day.weekday()]}）"


def address(rng: random.Random) -> str:
    a, b, c = rng.randint(1, 6), rng.randint(1, 30), rng.randint(1, 25)
    street = rng.choice((f"{a}丁目{b}番{c}号", f"{a}-{b}-{c}", f"{a}丁目{b}-{c}"))
    return f"〒{rng.randint(100, 899)}-{rng.randint(0, 9999):04d} " * rng.randint(0, 1) + rng.choice(PLACES) + street \
        + rng.choice(BUILDINGS)


def phone(rng: random.Random, mobile: bool = False) -> str:
    if mobile:
        return f"0{rng.choice('789')}0-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    return rng.choice((f"0466-{rng.randint(20, 89)}-{rng.randint(1000, 9999)}", f"03-{rng.randint(3000, 6999)}-{rng.randint(1000, 9999)}",
                       f"049-{rng.randint(220, 299)}-{rng.randint(1000, 9999)}"))


def insured(rng: random.Random) -> str:            # 介護保険被保険者番号: 10 digits
    return f"{rng.randint(0, 10 ** 9 - 1):010d}"


def my_number(rng: random.Random) -> str:
    body = f"{rng.randint(10 ** 10, 10 ** 11 - 1)}"
    digits = body + str(my_number_check_digit(body))
    return rng.choice((digits, f"{digits[:4]} {digits[4:8]} {digits[8:]}", f"{digits[:4]}-{digits[4:8]}-{digits[8:]}"))


def care_level(rng: random.Random) -> str:
    return rng.choice(("要支援1", "要支援2", "要介護1", "要介護2", "要介護3", "要介護4", "要介護5"))


def signature(rng: random.Random, staff: str) -> str:
    tel = phone(rng)
    return (f"\n--\n{rng.choice(CORPS)} {rng.choice(OFFICES)}\n{rng.choice(('介護支援専門員', '生活相談員', 'サービス提供責任者'))}"
            f" {staff}\n{address(rng)}\nTEL {tel}　FAX {tel[:-1]}{(int(tel[-1]) + 1) % 10}\n"
            f"E-mail {rng.choice(('info', 'office', 'soudan'))}@sakura-kaigo.example.jp\n")


# ---- contents: positives ----

def care_plan(rng):
    d = rng.sample(DISEASES, 2)
    return Content("ケアプラン", "sensitive", {"person_name", "birth_date", "address", "care_insured_number", "care_level",
                                                "disease"}, "居宅サービス計画書（1）", [
        ("作成年月日", reiwa(rng)), ("利用者名", name(rng, honorific=True)), ("生年月日", birth(rng)[0]),
        ("住所", address(rng)), ("被保険者番号", insured(rng)), ("要介護状態区分", care_level(rng)),
        ("居宅介護支援事業者", rng.choice(OFFICES))], notes=[
        f"課題：{d[0]}のため{rng.choice(('入浴に介助が必要', '歩行が不安定で転倒の危険がある', '服薬の管理が難しい'))}。",
        f"{d[1]}があり、{rng.choice(('通院の付き添いが必要', '自宅での生活を続けたい', '日中独居となる'))}。"])


def referral(rng):
    d, m = rng.sample(DISEASES, 3), rng.sample(MEDS, 2)
    b, age = birth(rng)
    return Content("診療情報提供書", "sensitive", {"person_name", "birth_date", "disease", "medication"}, "診療情報提供書", [
        ("紹介先", f"{rng.choice(HOSPITALS)} {rng.choice(('内科', '整形外科', '神経内科'))} 御侍史"),
        ("患者氏名", name(rng, honorific=rng.random() < .5)), ("性別", rng.choice("男女")), ("生年月日", f"{b}（{age}歳）"),
        ("傷病名", d[0]), ("既往歴", "、".join(d[1:])), ("現在の処方", "、".join(m)),
        ("紹介目的", rng.choice(("精査加療のお願い", "退院後の在宅療養についてのご相談", "専門的な評価のお願い")))],
        notes=[f"紹介元 {rng.choice(HOSPITALS)} 医師 {name(rng, rng.choice(YOUNGER))}"])


def assessment(rng):
    return Content("アセスメント", "sensitive", {"person_name", "birth_date", "care_level", "disease", "disability"},
                   "アセスメントシート", [
        ("氏名", name(rng)), ("生年月日", birth(rng)[0]), ("要介護度", care_level(rng)),
        ("既往歴", "、".join(rng.sample(DISEASES, 2))), ("障害", rng.choice(DISABILITIES)),
        ("入浴", rng.choice(("一部介助", "全介助", "見守り"))), ("歩行", rng.choice(("杖歩行", "車いす", "歩行器")))])


def roster(rng, rows=None):
    rows = rows or rng.randint(6, 10)
    table = [["No", "氏名", "生年月日", "要介護度", "被保険者番号"]]
    fixed = ["佐々木 ハル", "高橋 トメ"] if rng.random() < .5 else []
    for i in range(rows):
        who = fixed[i] if i < len(fixed) else name(rng, rng.choice(WOMEN[:15]) if rng.random() < .6 else None)
        table.append([str(i + 1), who, birth(rng)[0], care_level(rng), insured(rng)])
    return Content("利用者名簿", "sensitive", {"person_name", "birth_date", "care_level", "care_insured_number"},
                   f"{rng.choice(OFFICES)} 利用者名簿", table=table)


def my_number_list(rng):
    table = [["氏名", "個人番号", "生年月日"]] + [[name(rng), my_number(rng), birth(rng)[0]] for _ in range(rng.randint(3, 6))]
    return Content("個人番号一覧", "sensitive", {"person_name", "my_number", "birth_date"}, "個人番号（マイナンバー）届出一覧",
                   table=table)


def my_number_notice(rng):
    return Content("個人番号の連絡", "sensitive", {"person_name", "my_number"}, notes=[
        "市役所 介護保険課 ご担当者様", "いつもお世話になっております。",
        f"ご依頼のありました{name(rng, honorific=True)}の個人番号をお知らせします。", f"個人番号：{my_number(rng)}",
        "取り扱いにはご注意ください。"])


def care_record(rng):
    med = rng.choice(MEDS)
    entries = [f"入浴介助。皮膚状態{rng.choice(('異常なし', '臀部に発赤あり'))}。",
               f"排泄介助（おむつ交換{rng.randint(1, 3)}回）。", f"バイタル 血圧{rng.randint(118, 160)}/{rng.randint(62, 95)} "
               f"体温36.{rng.randint(2, 9)}℃ 脈拍{rng.randint(60, 90)}", f"服薬介助（{med}）。",
               f"昼食 {rng.choice(('全量', '8割', '半分'))}摂取。", "夜間 トイレ誘導2回、ふらつきあり。"]
    rng.shuffle(entries)
    day = rng.randint(1, 20)
    table = [[f"{rng.randint(1, 12)}/{day + i}", f"{rng.randint(8, 17)}:{rng.choice(('00', '30'))}", e]
             for i, e in enumerate(entries)]
    return Content("介護記録", "sensitive", {"person_name", "care_record", "medication"},
                   f"介護記録（{rng.choice(('経過記録', 'ケース記録', '支援経過'))}）", [("利用者", name(rng, honorific=True))],
                   table)


def emergency_contacts(rng):
    mail = rng.random() < .5
    table = [["利用者", "連絡先氏名", "続柄", "電話", "住所"] + (["メール"] if mail else [])]
    for _ in range(rng.randint(3, 5)):
        row = [name(rng), name(rng, rng.choice(YOUNGER)), rng.choice(("長男", "長女", "次女", "夫", "妻")),
               phone(rng, mobile=True), address(rng)]
        table.append(row + ([f"{rng.choice(('hanako', 'k.sato', 'taro1962', 'mika-y'))}{rng.randint(1, 99)}@"
                             f"{rng.choice(('docomo.ne.jp', 'gmail.com', 'yahoo.co.jp'))}"] if mail else []))
    return Content("緊急連絡先一覧", "personal", {"person_name", "phone", "address"} | ({"email"} if mail else set()),
                   "緊急連絡先一覧", table=table)


def transport(rng):
    table = [["便", "時刻", "氏名", "住所", "電話"]]
    for i in range(rng.randint(4, 7)):
        table.append([f"{i % 2 + 1}便", f"{8 + i // 3}:{rng.choice(('10', '25', '40', '55'))}", name(rng, honorific=True),
                      address(rng), phone(rng)])
    return Content("送迎表", "personal", {"person_name", "address", "phone"}, f"送迎表 {reiwa(rng)}", table=table)


def insurance_admin(rng):
    return Content("保険・年金手続き控", "personal", {"person_name", "birth_date", "pension_number", "health_insurance_number"},
                   "後期高齢者医療・年金 手続き控", [
        ("氏名", name(rng)), ("生年月日", birth(rng)[0]), ("基礎年金番号", f"{rng.randint(1000, 9999)}-{rng.randint(0, 999999):06d}"),
        ("後期高齢者医療 保険者番号", f"39{rng.randint(100000, 299999)}"),
        ("後期高齢者医療 被保険者番号", f"{rng.randint(10 ** 7, 10 ** 8 - 1)}"), ("手続き", rng.choice(("住所変更", "再交付申請")))])


def hospital_mail(rng):
    b = birth(rng)[0]
    return Content("病院への連絡", "sensitive", {"person_name", "birth_date", "care_level", "disease", "medication"}, notes=[
        f"{rng.choice(HOSPITALS)} 地域医療連携室 ご担当者様", "いつもお世話になっております。",
        f"ご利用者の{name(rng, honorific=True)}（{b}生、{care_level(rng)}）について、"
        f"{rng.choice(('退院前カンファレンスの日程をご相談したく', '退院後のサービス調整のため', '受診時の情報共有として'))}ご連絡します。",
        f"{rng.choice(DISEASES)}の既往があり、現在{rng.choice(MEDS)}を服用中です。", "ご確認のほどよろしくお願いいたします。"])


def family_mail(rng):
    client = name(rng, rng.choice(WOMEN))
    return Content("家族への連絡", "personal", {"person_name", "phone"}, notes=[
        f"{client} 様のご家族様", "いつもお世話になっております。",
        f"{reiwa(rng)}のお迎えは{rng.randint(8, 9)}時{rng.choice(('10', '30', '45'))}分ごろになります。",
        f"当日の緊急連絡先は長男の{name(rng, rng.choice(YOUNGER))}様（携帯 {phone(rng, mobile=True)}）で承っております。"])


def meeting_minutes(rng):
    return Content("担当者会議の要点", "sensitive", {"person_name", "disease", "care_level"}, "サービス担当者会議の要点", [
        ("利用者名", name(rng, honorific=True)), ("開催日", reiwa(rng)), ("出席者", "本人、長女、主治医、訪問看護、福祉用具"),
        ("検討内容", f"{rng.choice(DISEASES)}の進行により日中の見守りが必要"),
        ("結論", f"{care_level(rng)}への区分変更申請を行い、通所介護を週3回に増やす")])


def medication_notebook(rng):
    b = birth(rng)[0]
    meds = [[m, rng.choice(("1日1回 朝食後", "1日2回 朝夕食後", "1日1回 就寝前")), f"{rng.choice((14, 28, 30))}日分"]
            for m in rng.sample(MEDS, 3)]
    return Content("おくすり手帳", "sensitive", {"person_name", "birth_date", "medication"}, "おくすり手帳", [
        ("氏名", name(rng, honorific=True)), ("生年月日", b), ("調剤日", reiwa(rng)), ("薬局", "みなと調剤薬局")], meds)


def disability_app(rng):
    return Content("障害福祉サービス申請", "sensitive", {"person_name", "birth_date", "address", "phone", "disability"},
                   "障害福祉サービス受給者証 申請書", [
        ("氏名", name(rng)), ("生年月日", birth(rng)[0]), ("住所", address(rng)), ("電話", phone(rng)),
        ("障害者手帳", rng.choice(DISABILITIES)), ("障害支援区分", f"区分{rng.randint(2, 6)}")])


def insured_card(rng):
    return Content("介護保険被保険者証", "sensitive", {"person_name", "birth_date", "address", "care_insured_number",
                                                      "care_level"}, "介護保険被保険者証", [
        ("番号", insured(rng)), ("住所", address(rng)), ("氏名", name(rng)), ("生年月日", birth(rng)[0]),
        ("要介護状態区分等", care_level(rng)), ("認定の有効期間", "令和8年4月1日〜令和9年3月31日")])


# ---- contents: negatives ----

def meeting_schedule(rng):
    table = [["日付", "時間", "会議", "場所"]] + [[reiwa(rng), f"{rng.randint(9, 16)}:00〜{rng.randint(9, 16)}:30", m,
                                                   rng.choice(("2階 会議室", "相談室", "オンライン"))]
                                                  for m in rng.sample(("運営会議", "ケース検討会", "感染対策委員会", "事故防止委員会",
                                                                       "身体拘束適正化委員会", "職員会議"), 4)]
    return Content("会議日程", "none", set(), f"令和8年度 {rng.randint(1, 12)}月 会議予定", table=table,
                   notes=["欠席の場合は事前にご連絡ください。"])


def holidays(rng):
    picked = sorted(rng.sample(HOLIDAYS_2026, 10) + [(2, 23, "天皇誕生日")] * 0)
    picked = sorted(set(picked) | {(2, 23, "天皇誕生日"), (4, 29, "昭和の日")})
    style = rng.randint(0, 2)
    table = [["日付", "祝日"]] + [[(f"令和8年{m}月{d}日（{WEEK[date(2026, m, d).weekday()]}）", f"{m}月{d}日",
                                  f"R8.{m}.{d}")[style], n] for m, d, n in picked]
    return Content("祝日一覧", "none", set(), "令和8年 祝日・休業日のお知らせ", table=table,
                   notes=["祝日は通常どおり営業いたします。年末年始（12月30日〜1月3日）は休業です。"])


def training(rng):
    table = [["日時", "テーマ", "講師"]] + [[reiwa(rng), t, rng.choice(("外部講師（認知症介護指導者）", "看護師", "管理者"))]
                                         for t in rng.sample(TOPICS, 3)]
    return Content("研修案内", "none", set(), "職員研修のご案内", table=table,
                   notes=["対象：介護職員・看護職員", f"申込締切：{reiwa(rng)}"])


def flyer(rng):
    office = rng.choice(OFFICES)
    return Content("イベントチラシ", "none", set(), f"{rng.choice(EVENTS)}のお知らせ", [
        ("日時", f"{reiwa(rng)} 13:30〜15:00"), ("場所", f"{office}（{address(rng)}）"), ("参加費", "無料"),
        ("お問い合わせ", f"{office} TEL {phone(rng)}")], notes=["どなたでもお気軽にご参加ください。"])


def invoice(rng):
    items = [["品名", "数量", "単価", "金額"]]
    for item in rng.sample(("使い捨て手袋 M", "マスク 50枚入", "尿取りパッド", "消毒用アルコール 1L", "ペーパータオル"), 3):
        n, p = rng.randint(2, 20), rng.choice((480, 980, 1250, 2300))
        items.append([item, str(n), f"{p:,}円", f"{n * p:,}円"])
    return Content("請求書", "none", set(), "請求書", [
        ("請求先", f"{rng.choice(CORPS)} {rng.choice(OFFICES)} 御中"), ("請求日", reiwa(rng)),
        ("登録番号", f"T{rng.randint(10 ** 12, 10 ** 13 - 1)}"), ("発行元", f"株式会社ケア用品サプライ {address(rng)} TEL {phone(rng)}"),
        ("振込先", f"湘南銀行 藤沢支店 普通 {rng.randint(10 ** 6, 10 ** 7 - 1)}")], items)


def menu(rng):
    dishes = ("ご飯", "味噌汁", "鯖の味噌煮", "肉じゃが", "ほうれん草のお浸し", "茶碗蒸し", "かぼちゃの煮物", "親子丼", "けんちん汁")
    table = [["曜日", "朝食", "昼食", "夕食"]] + [[d] + ["・".join(rng.sample(dishes, 2)) for _ in range(3)] for d in "月火水木金"]
    return Content("献立表", "none", set(), "今週の献立", table=table,
                   notes=["刻み食・ミキサー食・減塩食にも対応します。", "アレルギーのある方は職員にお申し出ください。"])


def bed_vacancy(rng):
    table = [["日付", "空床"]] + [[f"{rng.randint(1, 12)}月{d}日", f"{rng.randint(0, 3)}床"] for d in range(3, 20, 4)]
    return Content("空床状況", "none", set(), "ショートステイ 空床状況のお知らせ", table=table,
                   notes=[f"お問い合わせ：生活相談員まで TEL {phone(rng)}"])


def ops_stats(rng):
    levels = [["要介護度", "人数"]] + [[f"要介護{i}", f"{rng.randint(2, 9)}名"] for i in range(1, 6)]
    return Content("運営状況報告", "none", set(), "運営推進会議 報告", [
        ("開催日", reiwa(rng)), ("利用者数", f"{rng.randint(18, 30)}名"), ("平均要介護度", f"2.{rng.randint(1, 9)}")], levels,
        [f"今月の入院：{rng.randint(1, 3)}名（肺炎、骨折）。認知症ケア研修を実施しました。"])


def blank(rng):
    return Content("白紙スキャン", "none", set())


# ---- renderers ----

def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WFA" else 1 for c in text)


def wrap(line: str, limit: int) -> list[str]:
    """Lines of at most ``limit`` half-width columns, broken after 、。 or a space where possible."""
    out = []
    while width(line) > limit:
        used, cut, soft = 0, 0, 0
        for i, ch in enumerate(line):
            used += width(ch)
            if used > limit:
                break
            cut = i + 1
            if ch in "、。 　,）":
                soft = i + 1
        out.append(line[:soft or cut])
        line = line[soft or cut:]
    return out + [line]


def wrapped(c: Content, limit: int = 80) -> list[str]:
    return [part for line in c.lines() for part in wrap(line, limit)]


def docx_file(c: Content, rng) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(c.title, 1)
    if c.pairs and rng.random() < .5:
        for k, v in c.pairs:
            document.add_paragraph(f"{k}：{v}")
    for rows in ([list(p) for p in c.pairs] if c.pairs and not document.paragraphs[1:] else [], c.table):
        if rows:
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            table.style = "Table Grid"
            for r, row in enumerate(rows):
                for k, cell in enumerate(row):
                    table.cell(r, k).text = cell
    for note in c.notes:
        document.add_paragraph(note)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_file(c: Content) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = (c.title or "Sheet1")[:31].replace("（", "(").replace("）", ")")
    for row in [[c.title]] + [list(p) for p in c.pairs] + [[]] + c.table + [[n] for n in c.notes]:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_file(c: Content) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([[c.title]] + [list(p) for p in c.pairs] + c.table + [[n] for n in c.notes])
    return out.getvalue().encode("cp932")


def html_body(c: Content, greeting: str, sign: str) -> str:
    cell = lambda t, tag="td": f"<{tag} style='border:1px solid #999;padding:2px 6px'>{html.escape(t)}</{tag}>"  # noqa: E731
    tables = []
    for rows in ([list(p) for p in c.pairs], c.table):
        if rows:
            tables.append("<table style='border-collapse:collapse'>" + "".join(
                "<tr>" + "".join(cell(t, "th" if r == 0 and rows is c.table else "td") for t in row) + "</tr>"
                for r, row in enumerate(rows)) + "</table>")
    return (f"<html><body><p>{html.escape(greeting)}</p><h3>{html.escape(c.title)}</h3>{''.join(tables)}"
            + "".join(f"<p>{html.escape(n)}</p>" for n in c.notes) + f"<pre>{html.escape(sign)}</pre></body></html>")


def scan_pdf(pages: list[list[str]], dpi: int, rng) -> bytes:
    from PIL import ImageFilter

    images = [D.paper(lines, dpi, (210, 297)).filter(ImageFilter.GaussianBlur(rng.uniform(.3, .7))).convert("RGB")
              for lines in pages]
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


def fax_tiff(pages: list[list[str]], fine: bool, rng) -> bytes:
    """A4 internet FAX (TIFF-F, G4) with the sender's header line, as a multifunction printer makes it."""
    ydpi, frames, tel = 196 if fine else 98, [], phone(rng)
    for n, lines in enumerate(pages, 1):
        header = f"2026/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d} {rng.randint(8, 18)}:{rng.randint(0, 59):02d}  FAX {tel}  P.{n}/{len(pages)}"
        image = D.paper([header, ""] + lines, 204, (210, 297))
        frames.append(image.resize((image.width, round(image.height * ydpi / 204))).convert("1"))
    out = io.BytesIO()
    frames[0].save(out, "TIFF", compression="group4", dpi=(204, ydpi), save_all=True, append_images=frames[1:])
    return out.getvalue()


def photo(lines: list[str], ext: str, rng) -> bytes:
    """A phone photo of a printed A5 sheet on a desk (JPEG), or a screenshot-like PNG."""
    from PIL import Image, ImageFilter

    page = D.paper(lines, 200)
    out = io.BytesIO()
    if ext == "png":
        page.save(out, "PNG")
        return out.getvalue()
    desk = tuple(rng.randint(90, 150) for _ in range(3))
    sheet = Image.merge("RGB", [page.point(lambda v, k=k: v * k // 255) for k in (250, 246, 236)])
    canvas = Image.new("RGB", (sheet.width + 160, sheet.height + 160), desk)
    canvas.paste(sheet, (80, 80))
    canvas = canvas.rotate(rng.uniform(-3, 3), resample=Image.BICUBIC, fillcolor=desk).filter(ImageFilter.GaussianBlur(.8))
    canvas.save(out, "JPEG", quality=rng.choice((75, 85)))
    return out.getvalue()


def pages_of(c: Content, count: int, per_page: int = 30) -> list[list[str]]:
    lines = wrapped(c)
    size = max(1, min(per_page, -(-len(lines) // count)))
    return [lines[i:i + size] for i in range(0, len(lines), size)] or [[]]


GREETINGS = ("お世話になっております。資料を添付いたします。ご確認をお願いいたします。", "標記の件、添付のとおり送付します。",
             "いつもお世話になっております。ご依頼の書類をお送りします。")
MIMES = {"docx": D.DOCX, "xlsx": D.XLSX, "csv": "text/csv", "pdf": "application/pdf", "tif": "image/tiff",
         "jpg": "image/jpeg", "png": "image/png"}


def render(fmt: str, c: Content, rng, option: str) -> tuple[bytes, str, bytes]:
    """(raw message, file name, file bytes) of content ``c`` in format ``fmt``."""
    msg = EmailMessage()
    staff = rng.choice(STAFF)
    msg["From"] = f"{staff} <{rng.choice(('care', 'soudan', 'office'))}@sakura-kaigo.example.jp>" if rng.random() < .5 \
        else D.STAFF
    msg["To"], msg["Subject"] = D.REGISTERED, rng.choice(("資料送付の件", "ご連絡", "書類の送付", "Fw: 資料"))
    greeting = rng.choice(GREETINGS)
    if fmt == "body-text":
        body = "\n".join(c.lines()) + "\n" + signature(rng, staff)
        charset = "iso-2022-jp" if rng.random() < .5 else "utf-8"
        try:
            body.encode(charset)
        except UnicodeEncodeError:
            charset = "utf-8"
        msg.set_content(body, charset=charset)
        return msg.as_bytes(policy=SMTP), "body.txt", body.encode()
    if fmt == "body-html":
        body = html_body(c, greeting, signature(rng, staff))
        msg.set_content(body, subtype="html", charset="utf-8")
        return msg.as_bytes(policy=SMTP), "body.html", body.encode()
    stem = c.what
    if fmt == "docx":
        name, data = f"{stem}.docx", docx_file(c, rng)
    elif fmt == "xlsx":
        name, data = f"{stem}.xlsx", xlsx_file(c)
    elif fmt == "csv-cp932":
        name, data = f"{stem}.csv", csv_file(c)
    elif fmt == "pdf-text":
        name, data = f"{stem}.pdf", D.referral_pdf(wrapped(c)[:38])
    elif fmt == "pdf-form":
        fields = [("様式", c.title)] + c.pairs + [(f"{row[0]}_{k}", v) for row in c.table[1:] for k, v in
                                                  zip(c.table[0][1:], row[1:])] + [(f"備考{i}", n) for i, n in enumerate(c.notes)]
        name, data = f"{stem}.pdf", D.form_pdf(fields)
    elif fmt == "pdf-vertical":
        name, data = f"{stem}.pdf", D.vertical_pdf([p for line in c.lines() for p in wrap(line, 96)][:20])
    elif fmt.startswith("scan-pdf"):
        pages = pages_of(c, int(option or 1))
        name, data = f"scan_2026{rng.randint(101, 1228):04d}_{rng.randint(80000, 175959)}.pdf", \
            scan_pdf(pages, int(fmt[-3:]), rng)
    elif fmt.startswith("fax"):
        name, data = f"FAX_{rng.randint(10 ** 9, 10 ** 10 - 1)}.tif", fax_tiff(pages_of(c, int(option or 1)), fmt == "fax-fine", rng)
    elif fmt == "photo":
        ext = option or "jpg"
        name, data = f"IMG_{rng.randint(1000, 9999)}.{ext}", photo(wrapped(c)[:15], ext, rng)
    else:
        raise ValueError(fmt)
    msg.set_content(greeting)
    maintype, subtype = MIMES[name.rsplit(".", 1)[1]].split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=SMTP), name, data


# format: (positives, negatives); "gen:opt" passes opt (page count or image type) to the renderer
PLAN = {
    "body-text": ("hospital_mail family_mail care_record my_number_notice emergency_contacts", "meeting_schedule training holidays"),
    "body-html": ("roster transport meeting_minutes", "meeting_schedule menu bed_vacancy"),
    "docx": ("assessment care_plan referral disability_app", "training ops_stats"),
    "xlsx": ("roster care_plan my_number_list insurance_admin", "meeting_schedule menu"),
    "csv-cp932": ("roster my_number_list transport", "holidays bed_vacancy"),
    "pdf-text": ("referral care_plan emergency_contacts insurance_admin", "invoice flyer"),
    "pdf-form": ("disability_app insurance_admin care_plan", "invoice"),
    "pdf-vertical": ("hospital_mail family_mail", "holidays flyer"),
    "scan-pdf-200": ("care_plan referral assessment", "blank training"),
    "scan-pdf-300": ("roster:2 my_number_list care_record insurance_admin", "invoice"),
    "fax-fine": ("referral:2 care_plan disability_app", "bed_vacancy meeting_schedule"),
    "fax-std": ("referral", "training"),
    "photo": ("medication_notebook care_record assessment:png insured_card", "menu flyer:png"),
}
OCR_FORMATS = ("scan-pdf-200", "scan-pdf-300", "fax-fine", "fax-std", "photo")
QUICK_NEGATIVES = ("body-text", "body-html", "docx", "xlsx", "pdf-text", "scan-pdf-200", "fax-fine")


def build(quick: bool = False) -> list[Doc]:
    """The documents of PLAN (``quick``: the first positive of each format and 7 negatives, 20 in all)."""
    docs, number = [], 0
    for fmt, (positives, negatives) in PLAN.items():
        for sign, entries in (("P", positives.split()), ("N", negatives.split())):
            for i, entry in enumerate(entries):
                number += 1
                if quick and not (i == 0 and (sign == "P" or fmt in QUICK_NEGATIVES)):
                    continue
                gen, _, option = entry.partition(":")
                doc_id = f"{sign}{number:02d}"
                rng = random.Random(f"{SEED}-{doc_id}")
                content = globals()[gen](rng)
                raw, filename, payload = render(fmt, content, rng, option)
                docs.append(Doc(doc_id, fmt, content.what, content.level, frozenset(content.kinds), raw, filename, payload))
    return docs
