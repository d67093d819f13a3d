"""corpus: what a Japanese care office sends, with labels, for bench/detection_quality.py.

Contents only (the renderers into mail bodies, Office files, PDFs, scans, FAXes and photos are in
render.py; the hard tier in corpus_hard.py): care plans, 診療情報提供書, assessments, resident lists with katakana given
names, My Number lists, care records, contact and transport lists, insurance papers as positives;
meeting schedules, 和暦 holiday lists (天皇誕生日, 昭和の日), training notices on 認知症ケア, flyers,
invoices, menus, bed vacancies, anonymous statistics and a blank page as negatives.

Each label was written from what the content holds, before and without reading the detectors:
the expected level (none / personal / sensitive: a sensitive fact about an identified person, or a
My Number) and the detector kinds that ought to fire. Names, numbers, dates and wording are drawn
from a generator seeded per document (``random.Random(f"2026-{id}")``), so every run and
``--quick`` make the same documents. ``my_number_check_digit`` is imported only to make valid numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from mailguard.check.content.detect import my_number_check_digit   # only to make valid numbers

SEED = 2026
SURNAMES = ("佐藤 鈴木 高橋 田中 伊藤 渡辺 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本 井上 木村 清水 山崎 池田 橋本 "
            "阿部 石川 前田 藤田 小川 岡田 後藤 長谷川 村上 近藤 坂本 遠藤 青木 西村 福田 太田 三浦 藤原 岡本 松田 中川 "
            "原田 小野 竹内 金子 和田 中山 石井 上田 森田 小島 柴田 宮崎 酒井 工藤 横山 宮本 内田 高木 安藤 島田 谷口 "
            "大野 丸山 今井 河野 藤本 村田 武田 上野 杉山 増田 大塚 平野 菅原 久保 松井 千葉 岩崎 桜井 木下 野口 松尾").split()
WOMEN = ("ハル トメ キヨ ツル ウメ マツ フミ シズ ヨシ チヨ ミツ タケ ハナ キク スミ 静子 和子 幸子 節子 久子 文子 千代子 "
         "美代子 芳子 房子 光子 悦子 信子 敏子 とし子").split()      # the first 15 in katakana, as many born before 1945
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
HOLIDAYS = ((1, 1, "元日"), (1, 12, "成人の日"), (2, 11, "建国記念の日"), (3, 20, "春分の日"), (5, 3, "憲法記念日"),
            (5, 4, "みどりの日"), (5, 5, "こどもの日"), (5, 6, "振替休日"), (7, 20, "海の日"), (8, 11, "山の日"),
            (9, 21, "敬老の日"), (9, 22, "国民の休日"), (9, 23, "秋分の日"), (10, 12, "スポーツの日"), (11, 3, "文化の日"),
            (11, 23, "勤労感謝の日"))   # 2026 (令和8年); 天皇誕生日 and 昭和の日 are always on the list
WEEK = "月火水木金土日"
GREETINGS = ("お世話になっております。資料を添付いたします。ご確認をお願いいたします。", "標記の件、添付のとおり送付します。",
             "いつもお世話になっております。ご依頼の書類をお送りします。")
P, S = "personal", "sensitive"


@dataclass
class Content:
    what: str                      # the kind of document, in Japanese
    level: str                     # expected: none / personal / sensitive
    kinds: set[str]                # detector kinds that ought to fire
    title: str = ""
    pairs: list[tuple[str, str]] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:   # table cells are set apart by two full-width spaces
        return ([self.title] if self.title else []) + [f"{k}：{v}" for k, v in self.pairs] \
            + ["　　".join(row) for row in self.table] + self.notes


# ---- people, numbers and dates ----

def name(rng, given=None, honorific=False) -> str:
    surname, given = rng.choice(SURNAMES), given or rng.choice(rng.choice((WOMEN, WOMEN, MEN)))
    return rng.choice((f"{surname} {given}", f"{surname} {given}", f"{surname}　{given}", f"{surname}{given}")) \
        + (" 様" if honorific else "")


def birth(rng) -> tuple[str, int]:
    y, m, d = rng.randint(1924, 1945), rng.randint(1, 12), rng.randint(1, 28)
    era, short = (f"昭和{y - 1925}年", f"S{y - 1925}") if y >= 1926 else (f"大正{y - 1911}年", f"T{y - 1911}")
    return rng.choice((f"{era}{m}月{d}日", f"{era}{m}月{d}日", f"{era} {m}月 {d}日", f"{y}年{m}月{d}日",
                       f"{y}/{m:02d}/{d:02d}", f"{short}.{m}.{d}")), 2026 - y


def reiwa(rng, month=None) -> str:
    day = date(2026, month or rng.randint(1, 12), rng.randint(1, 28))
    return f"令和8年{day.month}月{day.day}日（{WEEK[day.weekday()]}）"


def address(rng) -> str:
    a, b, c = rng.randint(1, 6), rng.randint(1, 30), rng.randint(1, 25)
    postcode = f"〒{rng.randint(100, 899)}-{rng.randint(0, 9999):04d} " if rng.random() < .5 else ""
    return postcode + rng.choice(PLACES) + rng.choice((f"{a}丁目{b}番{c}号", f"{a}-{b}-{c}", f"{a}丁目{b}-{c}")) \
        + rng.choice(BUILDINGS)


def phone(rng, mobile=False) -> str:
    four = lambda: rng.randint(1000, 9999)  # noqa: E731 (a fresh number at each call)
    if mobile:
        return f"0{rng.choice('789')}0-{four()}-{four()}"
    return rng.choice((f"0466-{rng.randint(20, 89)}-{four()}", f"03-{rng.randint(3000, 6999)}-{four()}",
                       f"049-{rng.randint(220, 299)}-{four()}"))


def insured(rng) -> str:            # 介護保険被保険者番号: 10 digits
    return f"{rng.randint(0, 2 * 10 ** 9):010d}"


def my_number(rng) -> str:          # 12 digits, the last a valid check digit
    body = f"{rng.randint(10 ** 10, 10 ** 11 - 1)}"
    n = body + str(my_number_check_digit(body))
    return rng.choice((n, f"{n[:4]} {n[4:8]} {n[8:]}", f"{n[:4]}-{n[4:8]}-{n[8:]}"))


def care_level(rng) -> str:
    return rng.choice(("要支援1", "要支援2", "要介護1", "要介護2", "要介護3", "要介護4", "要介護5"))


def signature(rng, staff: str) -> str:
    tel, role = phone(rng), rng.choice(("介護支援専門員", "生活相談員", "サービス提供責任者"))
    return (f"\n--\n{rng.choice(CORPS)} {rng.choice(OFFICES)}\n{role} {staff}\n{address(rng)}\n"
            f"TEL {tel}　FAX {tel[:-1]}{(int(tel[-1]) + 1) % 10}\n"
            f"E-mail {rng.choice(('info', 'office'))}@sakura-kaigo.example.jp\n")


# ---- contents: positives ----

def care_plan(rng):
    d = rng.sample(DISEASES, 2)
    return Content("ケアプラン", S, {"person_name", "birth_date", "address", "care_insured_number", "care_level", "disease"},
                   "居宅サービス計画書（1）", [
        ("作成年月日", reiwa(rng)), ("利用者名", name(rng, honorific=True)), ("生年月日", birth(rng)[0]), ("住所", address(rng)),
        ("被保険者番号", insured(rng)), ("要介護状態区分", care_level(rng)), ("居宅介護支援事業者", rng.choice(OFFICES))], notes=[
        f"課題：{d[0]}のため{rng.choice(('入浴に介助が必要', '歩行が不安定で転倒の危険がある', '服薬の管理が難しい'))}。",
        f"{d[1]}があり、{rng.choice(('通院の付き添いが必要', '自宅での生活を続けたい', '日中独居となる'))}。"])


def referral(rng):
    (d, *past), (b, age) = rng.sample(DISEASES, 3), birth(rng)
    return Content("診療情報提供書", S, {"person_name", "birth_date", "disease", "medication"}, "診療情報提供書", [
        ("紹介先", f"{rng.choice(HOSPITALS)} {rng.choice(('内科', '整形外科', '神経内科'))} 御侍史"),
        ("患者氏名", name(rng, honorific=rng.random() < .5)), ("性別", rng.choice("男女")), ("生年月日", f"{b}（{age}歳）"),
        ("傷病名", d), ("既往歴", "、".join(past)), ("現在の処方", "、".join(rng.sample(MEDS, 2))),
        ("紹介目的", rng.choice(("精査加療のお願い", "退院後の在宅療養についてのご相談", "専門的な評価のお願い")))],
        notes=[f"紹介元 {rng.choice(HOSPITALS)} 医師 {name(rng, rng.choice(YOUNGER))}"])


def assessment(rng):
    return Content("アセスメント", S, {"person_name", "birth_date", "care_level", "disease", "disability"}, "アセスメントシート", [
        ("氏名", name(rng)), ("生年月日", birth(rng)[0]), ("要介護度", care_level(rng)),
        ("既往歴", "、".join(rng.sample(DISEASES, 2))), ("障害", rng.choice(DISABILITIES)),
        ("入浴", rng.choice(("一部介助", "全介助", "見守り"))), ("歩行", rng.choice(("杖歩行", "車いす", "歩行器")))])


def roster(rng):
    table, fixed = [["No", "氏名", "生年月日", "要介護度", "被保険者番号"]], ["佐々木 ハル", "高橋 トメ"] if rng.random() < .5 else []
    for i in range(rng.randint(6, 10)):
        who = fixed[i] if i < len(fixed) else name(rng, rng.choice(WOMEN[:15]) if rng.random() < .6 else None)
        table.append([str(i + 1), who, birth(rng)[0], care_level(rng), insured(rng)])
    return Content("利用者名簿", S, {"person_name", "birth_date", "care_level", "care_insured_number"},
                   f"{rng.choice(OFFICES)} 利用者名簿", table=table)


def my_number_list(rng):
    return Content("個人番号一覧", S, {"person_name", "my_number", "birth_date"}, "個人番号（マイナンバー）届出一覧", table=[
        ["氏名", "個人番号", "生年月日"]] + [[name(rng), my_number(rng), birth(rng)[0]] for _ in range(rng.randint(3, 6))])


def my_number_notice(rng):
    return Content("個人番号の連絡", S, {"person_name", "my_number"}, notes=[
        "市役所 介護保険課 ご担当者様", "いつもお世話になっております。",
        f"ご依頼のありました{name(rng, honorific=True)}の個人番号をお知らせします。", f"個人番号：{my_number(rng)}",
        "取り扱いにはご注意ください。"])


def care_record(rng):
    entries = [f"入浴介助。{rng.choice(('皮膚の異常なし', '臀部に発赤あり'))}。", f"排泄介助（おむつ交換{rng.randint(1, 3)}回）。",
               f"バイタル 血圧{rng.randint(118, 160)}/{rng.randint(62, 95)} 体温36.{rng.randint(2, 9)}℃",
               f"服薬介助（{rng.choice(MEDS)}）。", f"昼食 {rng.choice(('全量', '8割', '半分'))}摂取。", "夜間 トイレ誘導2回、ふらつきあり。"]
    rng.shuffle(entries)
    month, day = rng.randint(1, 12), rng.randint(1, 20)
    return Content("介護記録", S, {"person_name", "care_record", "medication"},
                   f"介護記録（{rng.choice(('経過記録', 'ケース記録', '支援経過'))}）", [("利用者", name(rng, honorific=True))],
                   [[f"{month}/{day + i}", f"{rng.randint(8, 17)}:{rng.choice(('00', '30'))}", e]
                    for i, e in enumerate(entries)])


def emergency_contacts(rng):
    mail = rng.random() < .5
    table = [["利用者", "連絡先氏名", "続柄", "電話", "住所"] + ["メール"] * mail]
    for _ in range(rng.randint(3, 5)):
        email = f"{rng.choice(('hanako', 'mika-y'))}{rng.randint(1, 99)}@{rng.choice(('docomo.ne.jp', 'gmail.com'))}"
        table.append([name(rng), name(rng, rng.choice(YOUNGER)), rng.choice(("長男", "長女", "次女", "甥")),
                      phone(rng, mobile=True), address(rng)] + [email] * mail)
    return Content("緊急連絡先一覧", P, {"person_name", "phone", "address", *["email"] * mail}, "緊急連絡先一覧", table=table)


def transport(rng):
    rows = [[f"{i % 2 + 1}便", f"{8 + i // 3}:{rng.choice(('10', '25', '40', '55'))}", name(rng, honorific=True),
             address(rng), phone(rng)] for i in range(rng.randint(4, 7))]
    return Content("送迎表", P, {"person_name", "address", "phone"}, f"送迎表 {reiwa(rng)}",
                   table=[["便", "時刻", "氏名", "住所", "電話"], *rows])


def insurance_admin(rng):
    return Content("保険・年金手続き控", P, {"person_name", "birth_date", "pension_number", "health_insurance_number"},
                   "後期高齢者医療・年金 手続き控", [
        ("氏名", name(rng)), ("生年月日", birth(rng)[0]), ("基礎年金番号", f"{rng.randint(1000, 9999)}-{rng.randint(0, 999999):06d}"),
        ("後期高齢者医療 保険者番号", f"39{rng.randint(100000, 299999)}"),
        ("後期高齢者医療 被保険者番号", f"{rng.randint(10 ** 7, 10 ** 8 - 1)}"), ("手続き", rng.choice(("住所変更", "再交付申請")))])


def hospital_mail(rng):
    return Content("病院への連絡", S, {"person_name", "birth_date", "care_level", "disease", "medication"}, notes=[
        f"{rng.choice(HOSPITALS)} 地域医療連携室 ご担当者様", "いつもお世話になっております。",
        (f"ご利用者の{name(rng, honorific=True)}（{birth(rng)[0]}生、{care_level(rng)}）について、"
         f"{rng.choice(('退院前カンファレンスの日程をご相談したく', '退院後の調整のため', '受診時の情報共有として'))}ご連絡します。"),
        f"{rng.choice(DISEASES)}の既往があり、現在{rng.choice(MEDS)}を服用中です。", "ご確認のほどよろしくお願いいたします。"])


def family_mail(rng):
    return Content("家族への連絡", P, {"person_name", "phone"}, notes=[
        f"{name(rng, rng.choice(WOMEN))} 様のご家族様", "いつもお世話になっております。",
        f"{reiwa(rng)}のお迎えは{rng.randint(8, 9)}時{rng.choice(('10', '30', '45'))}分ごろになります。",
        f"当日の緊急連絡先は長男の{name(rng, rng.choice(YOUNGER))}様（携帯 {phone(rng, mobile=True)}）で承っております。"])


def meeting_minutes(rng):
    return Content("担当者会議の要点", S, {"person_name", "disease", "care_level"}, "サービス担当者会議の要点", [
        ("利用者名", name(rng, honorific=True)), ("開催日", reiwa(rng)), ("出席者", "本人、長女、主治医、訪問看護、福祉用具"),
        ("検討内容", f"{rng.choice(DISEASES)}の進行により日中の見守りが必要"),
        ("結論", f"{care_level(rng)}への区分変更申請を行い、通所介護を週3回に増やす")])


def medication_notebook(rng):
    return Content("おくすり手帳", S, {"person_name", "birth_date", "medication"}, "おくすり手帳", [
        ("氏名", name(rng, honorific=True)), ("生年月日", birth(rng)[0]), ("調剤日", reiwa(rng)), ("薬局", "みなと調剤薬局")],
        [[m, rng.choice(("1日1回 朝食後", "1日2回 朝夕食後", "1日1回 就寝前")), f"{rng.choice((14, 28, 30))}日分"]
         for m in rng.sample(MEDS, 3)])


def disability_app(rng):
    return Content("障害福祉サービス申請", S, {"person_name", "birth_date", "address", "phone", "disability"},
                   "障害福祉サービス受給者証 申請書", [
        ("氏名", name(rng)), ("生年月日", birth(rng)[0]), ("住所", address(rng)), ("電話", phone(rng)),
        ("障害者手帳", rng.choice(DISABILITIES)), ("障害支援区分", f"区分{rng.randint(2, 6)}")])


def insured_card(rng):
    return Content("介護保険被保険者証", S, {"person_name", "birth_date", "address", "care_insured_number", "care_level"},
                   "介護保険被保険者証", [
        ("番号", insured(rng)), ("住所", address(rng)), ("氏名", name(rng)), ("生年月日", birth(rng)[0]),
        ("要介護状態区分等", care_level(rng)), ("認定の有効期間", "令和8年4月1日〜令和9年3月31日")])


# ---- contents: negatives (no one's personal data; the office's own contacts are not) ----

def meeting_schedule(rng):
    month, rows = rng.randint(1, 12), []
    for meeting in rng.sample(("運営会議", "ケース検討会", "感染対策委員会", "事故防止委員会", "身体拘束適正化委員会", "職員会議"), 4):
        start = rng.randint(9, 16)
        rows.append([reiwa(rng, month), f"{start}:00〜{start + 1}:30", meeting, rng.choice(("2階 会議室", "相談室", "オンライン"))])
    return Content("会議日程", "none", set(), f"令和8年度 {month}月 会議予定", table=[["日付", "時間", "会議", "場所"]] + rows,
                   notes=["欠席の場合は事前にご連絡ください。"])


def holidays(rng):
    style = rng.randint(0, 2)
    day = (lambda m, d: f"令和8年{m}月{d}日（{WEEK[date(2026, m, d).weekday()]}）", lambda m, d: f"{m}月{d}日",
           lambda m, d: f"R8.{m}.{d}")[style]
    table = [["日付", "祝日"]] + [[day(m, d), n]
                                for m, d, n in sorted(rng.sample(HOLIDAYS, 9) + [(2, 23, "天皇誕生日"), (4, 29, "昭和の日")])]
    return Content("祝日一覧", "none", set(), "令和8年 祝日・休業日のお知らせ", table=table,
                   notes=["祝日は通常どおり営業いたします。年末年始（12月30日〜1月3日）は休業です。"])


def training(rng):
    return Content("研修案内", "none", set(), "職員研修のご案内", table=[["日時", "テーマ", "講師"]] + [
        [reiwa(rng), t, rng.choice(("外部講師（認知症介護指導者）", "看護師", "管理者"))] for t in rng.sample(TOPICS, 3)],
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
        ("登録番号", f"T{rng.randint(10 ** 12, 10 ** 13 - 1)}"), ("発行元", "株式会社ケア用品サプライ"), ("所在地", address(rng)),
        ("TEL", phone(rng)), ("振込先", f"湘南銀行 藤沢支店 普通 {rng.randint(10 ** 6, 10 ** 7 - 1)}")], items)


def menu(rng):
    dishes = ("ご飯", "味噌汁", "鯖の味噌煮", "肉じゃが", "ほうれん草のお浸し", "茶碗蒸し", "かぼちゃの煮物", "親子丼", "けんちん汁")
    return Content("献立表", "none", set(), "今週の献立", table=[["曜日", "朝食", "昼食", "夕食"]] + [
        [d] + ["・".join(rng.sample(dishes, 2)) for _ in range(3)] for d in "月火水木金"],
        notes=["刻み食・ミキサー食・減塩食にも対応します。", "アレルギーのある方は職員にお申し出ください。"])


def bed_vacancy(rng):
    month = rng.randint(1, 12)
    return Content("空床状況", "none", set(), "ショートステイ 空床状況のお知らせ", table=[["日付", "空床"]] + [
        [f"{month}月{d}日", f"{rng.randint(0, 3)}床"] for d in range(3, 28, 4)], notes=[f"お問い合わせ：生活相談員まで TEL {phone(rng)}"])


def ops_stats(rng):
    return Content("運営状況報告", "none", set(), "運営推進会議 報告", [
        ("開催日", reiwa(rng)), ("利用者数", f"{rng.randint(18, 30)}名"), ("平均要介護度", f"2.{rng.randint(1, 9)}")],
        [["要介護度", "人数"]] + [[f"要介護{i}", f"{rng.randint(2, 9)}名"] for i in range(1, 6)],
        [f"今月の入院：{rng.randint(1, 3)}名（肺炎、骨折）。認知症ケア研修を実施しました。"])


def blank(rng):
    return Content("白紙スキャン", "none", set())


# format: (positives, negatives), contents by function name; "name:opt" gives the renderer pages or image type
PLAN = {
    "body-text": ("hospital_mail family_mail care_record my_number_notice emergency_contacts",
                  "meeting_schedule training holidays"),
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


def plan(quick: bool = False, table: dict | None = None, prefix: str = "",
         quick_negatives: tuple[str, ...] = QUICK_NEGATIVES, make=None) -> list[tuple[str, str, str, Content, random.Random]]:
    """(id, format, renderer option, content, its generator) for each document of ``table`` (this
    module's PLAN by default; ids ``prefix`` + P/N + number); ``quick``: the first positive of each
    format and the negatives of ``quick_negatives`` (20 here). ``make(name)`` finds a generator (this
    module's by default). The generator goes on to the renderer."""
    make = make or (lambda name: globals()[name])
    out, number = [], 0
    for fmt, (positives, negatives) in (table or PLAN).items():
        for sign, entries in (("P", positives.split()), ("N", negatives.split())):
            for i, entry in enumerate(entries):
                number += 1
                if quick and not (i == 0 and (sign == "P" or fmt in quick_negatives)):
                    continue
                gen, _, option = entry.partition(":")
                doc_id = f"{prefix}{sign}{number:02d}"
                rng = random.Random(f"{SEED}-{doc_id}")
                out.append((doc_id, fmt, option, make(gen)(rng), rng))
    return out
