"""corpus_hard: the hard tier of bench/detection_quality.py — what a care office really sends.

The easy tier (corpus.py) writes every name with 様 under a 氏名 column and every date in Arabic
numerals. Here, as offices write them: names with no 様 and no column ("担当の山口です。長谷川 トメの件で"),
in katakana only (taken down on the phone), in half-width katakana (a care software's CSV export),
given names that are also words (森 実, 南 春); columns headed お名前, 利用者氏名, 対象者; 和暦 in kanji
numerals (昭和十五年四月三日生, 昭和元年), S15.4.3生, 満85歳; letters where the name and the illness are
paragraphs apart; a 縦書き 診療情報提供書; AcroForms whose facts are only checked boxes or field names; a
FAX whose cover sheet and covering letter come before the data on page 3; a phone photo of a form. The
renderers (noisy 150 dpi scans, FAX line noise, the photo's lighting, the checkbox form) are in render.py.

Negatives that look personal: price lists by 要介護度, event schedules with 令和 dates and 誕生日会,
newsletters with 敬老の日 and 100歳, a vendor invoice of medical supplies, case studies of "Aさん（80代女性）
認知症" (anonymised: no one), a blank FAX cover sheet, a blank form, statistics "要介護3 12名".

Labelling decision: a 勤務表 (shift table) of the office's own staff is labelled personal (names of
identified people with their working days: personal data to the recipient), unlike a signature or a
contact line ("the office's own contacts" of corpus.py, negatives there). Negatives name no one.

Labels were written from the content, before and without reading the detectors, with the kinds of
corpus.py. A line "\\f" is a page break (scans and FAXes). Pairs whose value is ☑/☐ are checkboxes
named by the key, "◉chosen/option/…" a radio group (pdf-form only; see render.form_pdf).
"""

from __future__ import annotations

import random
import unicodedata
from datetime import date, timedelta

import corpus as C
from corpus import P, S, Content, address, care_level, insured, phone, reiwa

PAGE = "\f"
READINGS = dict(pair.split(":") for pair in (
    "佐藤:サトウ 鈴木:スズキ 高橋:タカハシ 田中:タナカ 伊藤:イトウ 渡辺:ワタナベ 山本:ヤマモト 中村:ナカムラ 小林:コバヤシ "
    "加藤:カトウ 吉田:ヨシダ 山田:ヤマダ 長谷川:ハセガワ 大塚:オオツカ 山口:ヤマグチ 松本:マツモト 井上:イノウエ 木村:キムラ "
    "清水:シミズ 山崎:ヤマザキ 藤田:フジタ 小川:オガワ 西村:ニシムラ 三浦:ミウラ").split())
KANA_SURNAMES = list(READINGS.values())
KANA_GIVEN = C.WOMEN[:15] + "マサオ キヨシ シゲル イサム ミノル ヒロシ ススム サブロウ タケシ アキラ ヨシコ カズコ".split()
WORD_NAMES = [tuple(n.split("_")) for n in "森_実 林_進 原_勝 星_光 関_守 東_学 谷_登 南_春 西_幸 今_清 平_茂 泉_誠 浜_明 辻_勇".split()]
KANJI = "〇一二三四五六七八九"
EMPTY = "＿＿＿＿＿＿＿＿"


def kan(n: int) -> str:            # 1–199 in kanji numerals: 十五, 二十三, 百一
    if n >= 100:
        return "百" + (kan(n - 100) if n > 100 else "")
    tens, ones = divmod(n, 10)
    return (KANJI[tens] if tens > 1 else "") + ("十" if tens else "") + (KANJI[ones] if ones else "")


def plain_name(rng, given=None) -> str:   # no 様, spaced as people type
    surname, given = rng.choice(C.SURNAMES), given or rng.choice(rng.choice((C.WOMEN, C.WOMEN, C.MEN)))
    return rng.choice((f"{surname} {given}", f"{surname}{given}", f"{surname}　{given}"))


def kana_name(rng) -> str:
    return f"{rng.choice(KANA_SURNAMES)}{rng.choice((' ', '　', ''))}{rng.choice(KANA_GIVEN)}"


def half_width(text: str) -> str:  # ナカムラ ハル → ﾅｶﾑﾗ ﾊﾙ, as older care software exports it
    table = {unicodedata.normalize("NFKC", chr(c)): chr(c) for c in range(0xFF66, 0xFF9E)}
    for base in list(table.values()):
        for mark in "ﾞﾟ":
            composed = unicodedata.normalize("NFKC", base + mark)
            if len(composed) == 1:
                table[composed] = base + mark
    return "".join(table.get(ch, " " if ch == "　" else ch) for ch in text)


def day(when: date) -> str:
    return f"令和8年{when.month}月{when.day}日（{C.WEEK[when.weekday()]}）"


def birth_hard(rng, style=None) -> tuple[str, int]:
    """(date of birth as offices write it, age in 2026): kanji numerals, 昭和元年, S15.4.3, 昭15・4・3."""
    y, m, d = rng.randint(1924, 1944), rng.randint(1, 12), rng.randint(1, 28)
    era, n, short = ("昭和", y - 1925, "S") if y >= 1926 else ("大正", y - 1911, "T")
    year = "元" if n == 1 else kan(n)
    forms = {"kanji": f"{era}{year}年{kan(m)}月{kan(d)}日生", "dots": f"{short}{n}.{m}.{d}生",
             "zero": f"{short}{n:02d}.{m:02d}.{d:02d}", "naka": f"{era[0]}{n}・{m}・{d}生",
             "umare": f"{era}{n}年{m}月{d}日生まれ"}
    return forms[style or rng.choice(list(forms))], 2026 - y


def age(rng, years: int) -> str:
    return rng.choice((f"満{years}歳", f"満{years}歳", f"{years}歳", f"{years}才"))


# ---- positives ----

def phone_followup(rng):
    staff, disease = rng.choice(C.STAFF).split()[0], rng.choice(("誤嚥性肺炎", "慢性心不全の急性増悪", "腰椎圧迫骨折", "脳梗塞"))
    return Content("電話の折り返し（様なし）", S, {"person_name", "disease"}, notes=[
        f"{rng.choice(C.HOSPITALS)} 地域医療連携室 御中", "", "いつも大変お世話になっております。",
        f"{rng.choice(C.OFFICES)}、担当の{staff}です。", f"{plain_name(rng)}の件で、昨日お電話をいただいた退院日についてご連絡します。",
        f"ご長女と相談しましたところ、{reiwa(rng)}の午前中の退院でお願いしたいとのことでした。当日は介護タクシーを手配しております。",
        f"入院中に{disease}と診断されたと伺いましたので、退院時の服薬内容と今後の通院先を看護サマリーでいただけますと助かります。",
        "お手数ですがよろしくお願いいたします。"])


def katakana_mail(rng):
    years, month = rng.randint(82, 98), rng.randint(1, 12)
    return Content("カタカナの名前（電話で聞き取り）", S, {"person_name", "care_level"}, notes=[
        "生活相談員 各位", "",
        (f"居宅のケアマネジャーから、{kana_name(rng)}{rng.choice(('さん', '様', ''))}（{age(rng, years)}・{care_level(rng)}）の"
         f"{month}月{rng.randint(1, 20)}日から3泊4日のショートステイ利用について打診がありました。"),
        "お電話での受付のため、漢字表記は確認中です。", "空き状況を確認のうえ、明日中にお返事したいと思います。"])


def far_letter(rng):
    d1, d2 = rng.sample(C.DISEASES, 2)
    return Content("名前と病名が離れた手紙", S, {"person_name", "disease", "medication"}, notes=[
        f"{rng.choice(C.OFFICES)} 管理者様", "", "いつもお世話になっております。",
        f"先日お電話でご相談しました{C.name(rng, honorific=True)}の今後の支援について、当事業所で確認できたことをお知らせします。",
        "", "1. ご利用日程について", ("現在は月・水・金の週3回、9時30分から16時までご利用いただいております。"
                                  "来月からは火曜日を追加し、週4回とする方向でご家族と調整中です。"),
        "", "2. 送迎について", "ご自宅前の道路が狭いため、送迎車は角の公民館前に停車しています。乗降時は職員2名で対応しております。",
        "", "3. 利用料金について", "月末締め、翌月20日の口座振替となります。料金表は別途お送りいたします。",
        "", "4. ご家族の状況", "日中はお一人で過ごされており、ご長男は土日のみ来訪されます。",
        "", "5. 健康面について", f"ご本人は{d1}の診断を受けておられ、{d2}もあるため、日中の水分摂取と体調の変化に注意しております。",
        f"現在、{rng.choice(C.MEDS)}を朝食後に服用されています。", "", "以上、よろしくお願いいたします。"])


def shift_report(rng):
    people = [f"{s} {g}{rng.choice(('', '', 'さん'))}" for s, g in rng.sample(WORD_NAMES, 4)]
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    return Content("申し送り（名前が普通の語）", S, {"person_name", "care_record", "medication"},
                   f"申し送り（{month}月{day}日 日勤→夜勤）", notes=[
        f"・{people[0]}：昼食全量摂取。15時に37.{rng.randint(6, 9)}℃の発熱あり、看護師に報告しカロナール錠200mg服用。",
        f"・{people[1]}：入浴中止（血圧{rng.randint(165, 185)}/{rng.randint(92, 104)}）。清拭のみ実施。",
        f"・{people[2]}：夜間トイレ誘導2回。ふらつきあり、見守りを強化。",
        f"・{people[3]}：排便なし3日目、{rng.choice(('酸化マグネシウム錠330mg', 'センノシド錠12mg'))}を追加。"])


def resident_list(rng):
    head = rng.choice((["No.", "お名前", "年齢", "要介護度", "備考"], ["No", "利用者氏名", "年齢", "介護度", "備考"],
                       ["番号", "対象者", "年齢", "要介護度", "特記事項"]))
    notes = ["", "", "車いす", "難聴", "認知症あり", "糖尿病（インスリン）", "パーキンソン病", "心不全", "ペースメーカー"]
    rows = [[str(i + 1), kana_name(rng) if i == 2 else plain_name(rng), age(rng, rng.randint(78, 99)), care_level(rng),
             rng.choice(notes[4:8]) if i == 1 else rng.choice(notes)] for i in range(rng.randint(6, 8))]
    return Content("利用者一覧（見出し違い・満年齢）", S, {"person_name", "care_level", "disease"},
                   f"{rng.choice(C.OFFICES)} ご利用者一覧（{reiwa(rng)}現在）", table=[head, *rows])


def staff_shifts(rng):
    month, start = rng.randint(1, 12), rng.randint(1, 20)
    days = [f"{start + i}" for i in range(7)]
    rows = [[C.name(rng, given), rng.choice(("介護福祉士", "介護職員", "看護師"))] + [rng.choice("早日日遅夜明休休有") for _ in days]
            for given in rng.sample(C.YOUNGER, rng.randint(6, 8))]
    return Content("勤務表（職員）", P, {"person_name"}, f"令和8年{month}月 勤務表（{rng.choice(C.OFFICES)}）",
                   table=[["氏名", "職種", *days], *rows], notes=["早 7:00-16:00　日 9:00-18:00　遅 11:00-20:00　夜 16:30-翌9:30"])


def bath_schedule(rng):
    methods = ("一般浴", "機械浴（ストレッチャー）", "リフト浴", "シャワー浴")
    notes = ["脳梗塞後遺症で右片麻痺、移乗は2名介助", "血圧高め、入浴前に測定", "足に白癬あり、最後に入浴",
             "仙骨部に褥瘡あり、処置後に入浴", "特になし", "ペースメーカー使用、長湯を避ける"]
    rows = [[f"{10 + i // 2}:{('00', '30')[i % 2]}", plain_name(rng), rng.choice(methods), notes[0] if i == 0 else rng.choice(notes)]
            for i in range(rng.randint(5, 7))]
    return Content("入浴予定表", S, {"person_name", "care_record", "disease"}, f"本日の入浴予定（{reiwa(rng)}）",
                   table=[["時間", "対象者", "入浴方法", "注意事項"], *rows])


def kanji_opinion(rng):
    (b, years), d, sex = birth_hard(rng, "kanji"), rng.sample(C.DISEASES, 2), rng.choice("男女")
    return Content("主治医意見書（漢数字の和暦）", S, {"person_name", "birth_date", "address", "disease", "medication"},
                   "主治医意見書（写）", [
        ("申請者", plain_name(rng, rng.choice(C.MEN if sex == "男" else C.WOMEN))), ("生年月日", f"明・大・昭　{b}（満{kan(years)}歳）"),
        ("性別", sex),
        ("住所", address(rng)), ("1. 傷病名", f"(1) {d[0]}　(2) {d[1]}"), ("症状としての安定性", rng.choice(("安定", "不安定"))),
        ("投薬内容", "、".join(rng.sample(C.MEDS, 2))), ("認知症高齢者の日常生活自立度", rng.choice(("IIa", "IIb", "IIIa")))])


def accident_report(rng):
    years, fracture = rng.randint(80, 96), rng.choice(("右大腿骨頸部骨折", "左橈骨遠位端骨折", "腰椎圧迫骨折"))
    happened = date(2026, rng.randint(1, 12), rng.randint(1, 25))
    return Content("事故報告書（名前と病名が離れる）", S, {"person_name", "care_level", "disease"}, "事故報告書",
                   [("報告日", day(happened + timedelta(days=2))), ("事業所名", rng.choice(C.OFFICES)), ("報告者", "管理者")], notes=[
        f"1. 利用者　{plain_name(rng)}（{age(rng, years)}、{care_level(rng)}）", f"2. 発生日時　{day(happened)} 18時40分頃",
        "3. 発生場所　2階 居室", "4. 事故の状況",
        ("夕食後、居室でベッドから立ち上がろうとした際にバランスを崩し、床に尻もちをつく形で転倒された。"
         "物音に気付いた職員が駆け付けたところ、ベッドの横に座り込んでおられた。"),
        "5. 対応", "看護師が確認し、痛みの訴えが強いため救急車を要請した。職員1名が同乗した。",
        "6. 家族への連絡", "長男様へ電話で報告し、搬送先の病院で合流された。",
        "7. 受診結果", f"{rng.choice(C.HOSPITALS)}にて{fracture}と診断され、同日入院となった。",
        "8. 再発防止策", "センサーマットを設置し、夕食後は居室への付き添いを行う。"])


def halfwidth_kana_list(rng):
    rows = [[f"{rng.randint(1000, 9999)}", half_width(kana_name(rng)), rng.choice("男女女"), birth_hard(rng, "zero")[0],
             care_level(rng), "R8.04.01-R9.03.31"] for _ in range(rng.randint(5, 8))]
    return Content("半角カナの利用者一覧（介護ソフト出力）", S, {"person_name", "birth_date", "care_level"}, "利用者一覧",
                   table=[["ｺｰﾄﾞ", "ﾌﾘｶﾞﾅ", "性別", "生年月日", "要介護度", "認定有効期間"], *rows])


def target_list(rng):
    rows = [[plain_name(rng), birth_hard(rng, "dots")[0], insured(rng), care_level(rng),
             rng.choice(("通所介護 週2回", "訪問介護 週3回", "短期入所 月7日"))] for _ in range(rng.randint(4, 7))]
    return Content("対象者一覧（S15.4.3生）", S, {"person_name", "birth_date", "care_insured_number", "care_level"},
                   "モニタリング対象者", table=[["対象者", "生年月日", "被保険者番号", "要介護度", "サービス"], *rows])


def kanji_list(rng):
    rows = []
    for i in range(rng.randint(5, 7)):
        b, years = birth_hard(rng, "kanji")
        rows.append([f"{201 + i}", plain_name(rng, rng.choice(C.WOMEN[:15]) if rng.random() < .5 else None), b,
                     rng.choice((f"満{kan(years)}歳", f"満{years}歳")), care_level(rng)])
    return Content("入居者名簿（漢数字の和暦）", S, {"person_name", "birth_date", "care_level"},
                   f"ご入居者名簿（令和八年{kan(rng.randint(1, 12))}月一日現在）",
                   table=[["居室", "お名前", "生年月日", "年齢", "要介護度"], *rows])


def checkbox_form(rng):
    diseases = ("高血圧症", "糖尿病", "脳梗塞", "心疾患", "認知症", "骨折", "がん", "パーキンソン病")
    ticked = set(rng.sample(diseases, 2))
    levels = ["要支援1", "要支援2", "要介護1", "要介護2", "要介護3", "要介護4", "要介護5"]
    return Content("チェックボックスのフォーム", S, {"person_name", "birth_date", "disease", "care_level"}, pairs=[
        ("様式", "通所介護 利用申込書（基本情報）"), ("氏名", plain_name(rng)), ("生年月日", C.birth(rng)[0]),
        *[(f"既往歴_{d}", "☑" if d in ticked else "☐") for d in diseases],
        ("要介護度", "◉" + "/".join([rng.choice(levels), *levels])), ("服薬管理_要", "☑"), ("服薬管理_不要", "☐")])


def names_in_field_names(rng):
    return Content("名前がフィールド名だけのフォーム", P, {"person_name"}, pairs=[
        ("様式", "送迎 乗車確認表"), ("日付", reiwa(rng)),
        *[(f"乗車_{C.name(rng, honorific=True)}", rng.choice("☑☑☐")) for _ in range(rng.randint(5, 7))]])


def vertical_referral(rng):
    (b, years), (d1, d2), meds = birth_hard(rng, "kanji"), rng.sample(C.DISEASES, 2), rng.sample(C.MEDS, 2)
    return Content("縦書きの診療情報提供書", S, {"person_name", "birth_date", "disease", "medication"}, "診療情報提供書", notes=[
        f"{rng.choice(C.HOSPITALS)}　{rng.choice(('内科', '神経内科', '整形外科'))}　先生　御侍史",
        f"令和八年{kan(rng.randint(1, 12))}月{kan(rng.randint(1, 28))}日", f"患者氏名　{C.name(rng, honorific=rng.random() < .5)}",
        f"生年月日　{b}（満{kan(years)}歳）", f"傷病名　{d1}",
        f"平素より大変お世話になっております。上記の患者様につきまして、{rng.choice(('精査加療', '専門的な評価'))}をお願いしたくご紹介申し上げます。",
        f"既往歴として{d2}があり、現在{meds[0]}を一日一回朝食後、{meds[1]}を一日二回朝夕食後に処方しております。",
        "ご多忙のところ恐縮ですが、よろしくお願い申し上げます。", f"北沢クリニック　院長　{C.name(rng, rng.choice(C.YOUNGER))}"])


def fax_cover_data(rng):
    staff, office = rng.choice(C.STAFF).split()[0], rng.choice(C.OFFICES)
    (b, years), d = birth_hard(rng), rng.sample(C.DISEASES, 2)
    sent = date(2026, rng.randint(1, 12), rng.randint(1, 20))
    return Content("FAX送信票＋案内＋3枚目にデータ", S,
                   {"person_name", "birth_date", "address", "care_level", "disease", "medication"}, notes=[
        "FAX送信票", "", f"{rng.choice(C.HOSPITALS)} 地域医療連携室 御中", f"送信日：{day(sent)}", "送信枚数：本状を含め3枚",
        f"発信元：{office}　担当 {staff}", f"TEL {phone(rng)}　FAX {phone(rng)}", "件名：退院前カンファレンス資料", "",
        "通信欄：いつもお世話になっております。標記の資料をお送りいたします。ご確認のほどよろしくお願いいたします。", PAGE,
        "退院前カンファレンスについて（ご案内）", "", f"日時：{day(sent + timedelta(days=rng.randint(3, 8)))} 14時00分〜15時00分", "場所：3階病棟 カンファレンスルーム",
        "出席予定：ご本人、ご家族、介護支援専門員、訪問看護、福祉用具", "",
        "当日は退院後の生活についてご相談させていただきます。資料は次頁のとおりです。", PAGE,
        "フェイスシート", f"利用者氏名　{plain_name(rng)}", f"生年月日　{b}（{age(rng, years)}）", f"住所　{address(rng)}",
        f"要介護度　{care_level(rng)}", f"主な疾患　{d[0]}、{d[1]}", f"服薬　{'、'.join(rng.sample(C.MEDS, 2))}",
        "ADL　屋内は歩行器、屋外は車いす。入浴は一部介助。"])


def face_sheet(rng):
    (b, years), d = birth_hard(rng), rng.sample(C.DISEASES, 2)
    surname, given, gap = rng.choice(list(READINGS)), rng.choice(C.WOMEN[:15]), rng.choice((" ", "　"))
    return Content("フェイスシート（枠付きの用紙）", S,
                   {"person_name", "birth_date", "address", "phone", "care_level", "disease", "medication"}, "フェイスシート", [
        ("氏名", f"{surname}{gap}{given}"), ("フリガナ", f"{READINGS[surname]}{gap}{given}"), ("生年月日", f"{b}（{age(rng, years)}）"), ("住所", address(rng)),
        ("電話", phone(rng)), ("要介護度", care_level(rng)), ("主な疾患", f"{d[0]}、{d[1]}"), ("服薬", rng.choice(C.MEDS)),
        ("緊急連絡先", f"長女 {C.name(rng, rng.choice(C.YOUNGER))} {phone(rng, mobile=True)}")])


# ---- negatives (no one's personal data, however personal they look) ----

def price_list(rng):
    units = (658, 777, 900, 1023, 1148)
    rows = [[f"要介護{i + 1}", f"{u:,}単位", f"{round(u * 1.09):,}円"] for i, u in enumerate(units)]   # 10.9円/単位, 1割
    extras = [["入浴介助加算（I）", "40単位", "44円"], ["個別機能訓練加算（I）イ", "56単位", "61円"],
              ["認知症加算", "60単位", "65円"], ["口腔機能向上加算", "150単位", "164円"]]
    return Content("料金表", "none", set(), "通所介護 ご利用料金表（令和8年度・1割負担）",
                   table=[["区分", "基本単位", "自己負担（1日）"], *rows, *rng.sample(extras, 3)],
                   notes=["食費 650円／回（おやつ代を含む）　おむつ代 実費", "2割・3割負担の方は別表をご覧ください。"])


def event_schedule(rng):
    events = [(4, "お花見ドライブ"), (5, "母の日の会"), (6, "誕生日会（6月生まれの方）"), (7, "七夕まつり"),
              (8, "夏祭り・盆踊り"), (9, "敬老会（100歳・米寿のお祝い）"), (10, "運動会"), (12, "クリスマス会・誕生日会")]
    rows = [[reiwa(rng, m), e] for m, e in sorted(rng.sample(events, 6))]
    return Content("行事予定（誕生日会）", "none", set(), "令和8年度 年間行事予定", table=[["日付", "行事"], *rows],
                   notes=["誕生日会は毎月第3金曜日に行います。", "令和8年9月21日（月）は敬老の日です。ご家族の参加も歓迎いたします。"])


def newsletter(rng):
    return Content("施設だより（敬老の日・100歳）", "none", set(), f"ひまわり通信 第{rng.randint(40, 120)}号（令和8年9月）", notes=[
        "【敬老の日を迎えて】", (f"今年は100歳を迎えられた方が{rng.randint(1, 3)}名、米寿（88歳）の方が{rng.randint(3, 6)}名いらっしゃいます。"
                                 "市長からのお祝い状もいただきました。"), "【9月の誕生日会】", "9月生まれの方をお祝いし、手作りのケーキを皆さんで囲みました。",
        "【お知らせ】", "インフルエンザの予防接種は10月中旬から施設内で行います。認知症カフェは毎月第2土曜日です。"])


def training_cases(rng):
    return Content("事例検討（匿名化）", "none", set(), "事例検討会のご案内", notes=[
        f"日時：{reiwa(rng)} 18時〜19時30分　場所：2階 研修室", "",
        "事例1：Aさん（80代女性、要介護3）。アルツハイマー型認知症。夕方になると「家に帰る」と落ち着かなくなる。",
        "事例2：Bさん（70代男性、要介護2）。脳梗塞後遺症による右片麻痺。2型糖尿病でインスリン自己注射を行っている。",
        "事例3：Cさん（90代女性、要介護4）。慢性心不全。看取り期の家族支援について。",
        "※事例は個人が特定されないよう加工しています。資料は当日回収します。"])


def stats(rng):
    counts = [rng.randint(2, 8) for _ in range(5)]
    counts[2] = 12
    return Content("運営状況（要介護3 12名）", "none", set(), f"運営推進会議 資料（令和8年{rng.randint(1, 12)}月）", notes=[
        f"登録者数 {sum(counts)}名（男性{rng.randint(5, 9)}名）　平均年齢 86.{rng.randint(1, 9)}歳（最高齢 101歳）",
        "要介護度別：" + "、".join(f"要介護{i + 1} {n}名" for i, n in enumerate(counts)),
        "認知症高齢者の日常生活自立度 IIa以上 18名", "今期の入院 2名（誤嚥性肺炎1名、大腿骨頸部骨折1名）、看取り 1名",
        "事故報告 転倒3件（骨折なし）、誤薬0件"])


def vendor_invoice(rng):
    items = [["血圧計（上腕式）", 2, 6800], ["パルスオキシメーター", 3, 3980], ["褥瘡予防マットレス", 1, 48000],
             ["インスリン用注射針 32G", 5, 1650], ["経管栄養セット", 10, 420], ["とろみ剤 2.5kg", 2, 8900]]
    rows = [[n, str(q), f"{p:,}円", f"{q * p:,}円"] for n, q, p in rng.sample(items, 4)]
    return Content("業者の請求書（医療用品）", "none", set(), "請求書", [
        ("請求先", f"{rng.choice(C.CORPS)} {rng.choice(C.OFFICES)} 御中"), ("請求日", reiwa(rng)),
        ("登録番号", f"T{rng.randint(10 ** 12, 10 ** 13 - 1)}"), ("発行元", "株式会社メディカルサプライ湘南 営業部"),
        ("TEL", phone(rng)), ("振込先", f"湘南銀行 藤沢支店 普通 {rng.randint(10 ** 6, 10 ** 7 - 1)}")],
        [["品名", "数量", "単価", "金額"], *rows])


def blank_form(rng):
    return Content("空欄の申込書フォーム", "none", set(), pairs=[
        ("様式", "通所介護 利用申込書（基本情報）"), ("氏名", ""), ("フリガナ", ""), ("生年月日", ""), ("住所", ""), ("電話番号", ""),
        *[(f"既往歴_{d}", "☐") for d in ("高血圧症", "糖尿病", "脳梗塞", "認知症")],
        ("要介護度", "◉/要支援1/要支援2/要介護1/要介護2/要介護3/要介護4/要介護5")])


def vertical_newsletter(rng):
    return Content("縦書きのお便り（敬老の日・百歳）", "none", set(), "敬老の日によせて", notes=[
        "本年も九月の敬老の日を迎え、ご利用者の皆様のご長寿を心よりお祝い申し上げます。",
        f"当施設では今年、百歳を迎えられた方が{kan(rng.randint(1, 3))}名、米寿を迎えられた方が{kan(rng.randint(3, 6))}名いらっしゃいます。",
        "九月十八日には敬老会と九月生まれの方の誕生日会を開き、ご家族の皆様にもお越しいただきました。",
        "これからも皆様が健やかに過ごされますよう、職員一同努めてまいります。", "令和八年九月　施設長"])


def blank_fax_cover(rng):
    return Content("空欄のFAX送付状", "none", set(), notes=[
        "FAX送付状", "", f"宛先：{EMPTY} 様", f"FAX番号：{EMPTY}", "送信日：令和　　年　　月　　日", "送信枚数：本状を含め　　枚", "",
        f"発信元：{rng.choice(C.CORPS)} {rng.choice(C.OFFICES)}", f"TEL {phone(rng)}　FAX {phone(rng)}", "",
        "通信欄：", "", "※送信内容に不備がございましたら、お手数ですが上記までご連絡ください。"])


# format: (positives, negatives); "C.x" is corpus.x; ":opt" the renderer's noise, paper or form
PLAN = {
    "body-text": ("phone_followup katakana_mail far_letter shift_report", "event_schedule training_cases stats"),
    "body-html": ("resident_list staff_shifts bath_schedule", "price_list newsletter"),
    "docx": ("kanji_opinion accident_report", "newsletter training_cases"),
    "xlsx": ("resident_list staff_shifts", "price_list event_schedule"),
    "csv-cp932": ("halfwidth_kana_list target_list", "stats"),
    "pdf-text": ("far_letter kanji_list", "vendor_invoice"),
    "pdf-form": ("checkbox_form names_in_field_names", "blank_form"),
    "pdf-vertical": ("vertical_referral", "vertical_newsletter"),
    "scan-pdf-150": ("C.care_plan:grey resident_list:salt C.referral:tilt kanji_opinion:jpeg staff_shifts:mix",
                     "price_list:salt event_schedule:grey"),
    "fax-std": ("fax_cover_data:noisy kanji_list:noisy", "blank_fax_cover:noisy"),
    "fax-fine": ("shift_report:noisy", "training_cases:noisy"),
    "photo": ("face_sheet:form resident_list:lit", "price_list:lit"),
}
OCR_FORMATS = ("scan-pdf-150", "fax-std", "fax-fine", "photo")
QUICK_NEGATIVES = ("body-text", "docx", "pdf-form", "scan-pdf-150", "fax-std")


def plan(quick: bool = False) -> list[tuple[str, str, str, Content, random.Random]]:
    """As corpus.plan, ids H…: ``quick`` keeps the first positive of each format and 5 negatives (17)."""
    return C.plan(quick, PLAN, "H", QUICK_NEGATIVES,
                  lambda gen: getattr(C, gen[2:]) if gen.startswith("C.") else globals()[gen])
