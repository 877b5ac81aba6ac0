"""The demo world: thirty-one countries, their topics, and how topics spread between them.

Each country has local topics of its own; regional topics start in one country and reach most
of its region; a few global topics travel round the world. Seven corridors (US→CA, AR→CL,
ES→PT, DE→NL, JP→KR, SA→AE, AU→NZ) pair a leader with a follower that picks up most of what
trends there an hour or two later. :func:`demo_world` reads the tables below once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = ["Country", "World", "demo_world"]

# code, region, UTC offset, audience size (scales every count), local topics over the history,
# their volume relative to shared topics (followers have few, small ones), two news sites.
_COUNTRY_TABLE = """
US americas  -5  10.0 16 1.0  apnews.com nytimes.com
CA americas  -5   3.0  4 0.3  cbc.ca theglobeandmail.com
MX americas  -6   5.0 14 0.9  eluniversal.com.mx milenio.com
BR americas  -3   7.0 16 1.0  g1.globo.com folha.uol.com.br
AR americas  -3   4.0  5 0.35 clarin.com infobae.com
CO americas  -5   3.0 12 0.9  eltiempo.com elespectador.com
CL americas  -4   2.5  4 0.3  emol.com latercera.com
GB europe     0   6.0 16 1.0  bbc.co.uk theguardian.com
FR europe     1   5.0 14 0.9  lemonde.fr francetvinfo.fr
DE europe     1   5.5  5 0.35 spiegel.de tagesschau.de
ES europe     1   4.0  5 0.35 elpais.com rtve.es
IT europe     1   4.0 13 0.9  corriere.it ansa.it
NL europe     1   2.5  4 0.3  nos.nl nu.nl
PT europe     0   2.0  4 0.3  publico.pt rtp.pt
SE europe     1   2.0 10 0.8  svt.se dn.se
PL europe     1   3.0 12 0.9  onet.pl tvn24.pl
JP asia       9   6.0  6 0.4  nhk.or.jp asahi.com
KR asia       9   4.0  5 0.35 yna.co.kr chosun.com
IN asia     5.5   8.0 16 1.0  thehindu.com ndtv.com
ID asia       7   5.0 14 0.9  kompas.com detik.com
PH asia       8   4.0 12 0.9  inquirer.net rappler.com
TH asia       7   3.0 12 0.9  bangkokpost.com thairath.co.th
VN asia       7   3.0 12 0.9  vnexpress.net tuoitre.vn
NG africa_me  1   4.0 14 0.9  punchng.com premiumtimesng.com
ZA africa_me  2   3.0 12 0.9  news24.com iol.co.za
EG africa_me  2   3.5 12 0.9  ahram.org.eg youm7.com
KE africa_me  3   2.0 10 0.8  nation.africa standardmedia.co.ke
SA africa_me  3   3.0  5 0.35 arabnews.com sabq.org
AE africa_me  4   2.0  4 0.3  thenationalnews.com khaleejtimes.com
AU oceania   10   4.0  5 0.35 abc.net.au smh.com.au
NZ oceania   12   1.5  4 0.3  rnz.co.nz nzherald.co.nz
"""

# Local topics, "|"-separated; a country may take several lines. Four clubs give six matches.
_LOCAL_TABLE = """
US Powerball jackpot | Senate vote | Gas prices | Black Friday deals | SNL | New York weather
US Chicago snow | LA traffic | Thanksgiving travel | Fed minutes | Daylight saving time
US clubs: Cowboys | Eagles | Chiefs | Packers
CA Carbon tax | Bank of Canada | Via Rail strike | Toronto condo prices | Grey Cup
CA Montreal snowstorm
CA clubs: Maple Leafs | Canadiens | Canucks | Oilers
MX Día de Muertos | Metro CDMX | Peso mexicano | La Mañanera | Sismo hoy | Guadalajara lluvias
MX Monterrey calor | Aguinaldo | Buen Fin
MX clubs: América | Chivas | Tigres | Cruz Azul
BR BBB | Pix fora do ar | Enem | Copom | Carnaval | Chuva em São Paulo | Mega-Sena
BR Black Friday Brasil | Rock in Rio ingressos | Reforma tributária | Chuva no Rio
BR clubs: Flamengo | Palmeiras | Corinthians | Grêmio
AR Dólar blue | Inflación | Paro CGT | Gran Hermano | Aguinaldo | Subte porteño
AR clubs: Boca | River | Racing | Independiente
CO Reforma pensional | Pico y placa | Festival Vallenato | Dólar hoy | Transmilenio
CO Lluvias en Bogotá | Feria de Cali
CO clubs: Millonarios | Nacional | Junior | América de Cali
CL Fiestas Patrias | Retiro AFP | Temblor | Festival de Viña | Metro de Santiago
CL clubs: Colo-Colo | U. de Chile | Católica | Cobreloa
GB Strictly | Bank of England | Tube strike | Bake Off | NHS waiting lists | London fog
GB Glastonbury tickets | Budget statement | Met Office warning | Energy price cap
GB Wimbledon tickets
GB clubs: Arsenal | Man City | Liverpool | Chelsea
FR Grève SNCF | Réforme des retraites | Le Bac | Fête de la musique | Canicule
FR Périphérique bouchons | Prix des carburants | Star Academy | Tour de France 2026 parcours
FR clubs: PSG | OM | OL | LOSC
DE Bahnstreik | Tatort | Oktoberfest | Bundestag | Deutschlandticket | Glatteis
DE clubs: Bayern | Dortmund | Leverkusen | Leipzig
ES Lotería de Navidad | Operación Triunfo | Huelga de Renfe | Ola de calor | Sanfermines
ES Precio de la luz
ES clubs: Real Betis | Sevilla FC | Valencia | Villarreal
IT Sanremo | Sciopero treni | Maturità | Superenalotto | Ferragosto | Allerta meteo
IT Legge di bilancio | Acqua alta Venezia
IT clubs: Juventus | Inter | Milan | Napoli
NL Koningsdag | NS storing | Sinterklaas | Boer zoekt vrouw | Woningmarkt
NL clubs: Ajax | PSV | Feyenoord | AZ
PT Greve CP | Euromilhões | Santos Populares | Incêndios | Preço da habitação
PT clubs: Benfica | Sporting | FC Porto | SC Braga
SE Melodifestivalen | Midsommar | Nobelfesten | Riksbanken | SL-störning | Snökaos
SE clubs: AIK | Djurgården | Malmö FF | Hammarby
PL Sejm | Ceny prądu | Wszystkich Świętych | Matura | Taniec z gwiazdami | Smog w Krakowie
PL Mistrzostwa w skokach
PL clubs: Legia | Lech | Wisła | Raków
JP 紅白歌合戦 | 台風情報 | 日銀 | 箱根駅伝 | 新幹線 遅延 | M-1グランプリ | 桜 開花予想
JP clubs: 巨人 | 阪神 | ソフトバンク | 広島
KR 수능 | 한국은행 금리 | KTX 지연 | 로또 당첨번호 | 부산 불꽃축제 | 김장
KR clubs: 두산 | LG 트윈스 | KIA | 삼성 라이온즈
IN IPL auction | Diwali sales | Mumbai rains | Delhi AQI | UPSC results | Sensex | Bigg Boss
IN Monsoon update | Bengaluru traffic | RBI policy | Durga Puja | Bharat bandh
IN clubs: CSK | Mumbai Indians | RCB | KKR
ID Harga BBM | Banjir Jakarta | Gempa hari ini | Lebaran | Timnas Indonesia | KRL gangguan
ID Harga emas | Mudik | Macet Puncak
ID clubs: Persija | Persib | Arema | Bali United
PH Walang pasok | EDSA traffic | Lotto results | Manila flood | PBA Finals | Meralco rates
PH Sinulog
PH clubs: Ginebra | San Miguel | TNT | Magnolia
TH น้ำท่วม | หวยรัฐบาล | ลอยกระทง | สงกรานต์ | ฝุ่น PM2.5 | BTS ขัดข้อง | ราคาทอง
TH clubs: Buriram | BG Pathum | Port FC | Muangthong
VN Giá vàng | Tết Nguyên Đán | Kỳ thi THPT | Ngập Hà Nội | Xổ số miền Nam | Giá xăng
VN Mưa lớn TP.HCM
VN clubs: Hà Nội FC | Viettel | HAGL | Công An HN
NG Naira exchange rate | NEPA light | Lagos traffic | BBNaija | JAMB results | Fuel scarcity
NG Super Eagles | Detty December | Abuja rainstorm
NG clubs: Enyimba | Rangers | Rivers United | Remo Stars
ZA Load shedding | Springboks | Matric results | Joburg water outage | Rand dollar
ZA Taxi strike | Cape Town storm
ZA clubs: Kaizer Chiefs | Orlando Pirates | Sundowns | SuperSport
EG سعر الدولار | الثانوية العامة | مترو القاهرة | طقس القاهرة | أسعار الذهب
EG المتحف المصري الكبير | امتحانات الجامعة
EG clubs: الأهلي | الزمالك | بيراميدز | المصري
KE Nairobi traffic | KCSE results | Safaricom outage | Finance Bill | Harambee Stars
KE Matatu strike | Nairobi floods
KE clubs: Gor Mahia | AFC Leopards | Tusker | KCB
SA طقس الرياض | حساب المواطن | سوق الأسهم | اليوم الوطني | مترو الرياض | أمطار جدة
SA clubs: الهلال | النصر | الاتحاد | الأهلي
AE Dubai traffic | Salik | UAE weather | Emirates Draw | Golden visa
AE clubs: Al Ain | Shabab Al Ahli | Al Wahda | Sharjah
AU Melbourne Cup | RBA rate decision | Bushfire warning | Hottest 100 | Sydney storms
AU Schoolies
AU clubs: Collingwood | Carlton | Richmond | Essendon
NZ Auckland weather | OCR decision | Matariki | Waitangi Day | Wellington quake
NZ clubs: Blues | Crusaders | Chiefs | Hurricanes
"""

# Corridors: what trends in the leader reaches the follower an hour or two later.
_CORRIDOR_TABLE = """
US>CA Stanley Cup | NBA trade deadline | Super Bowl ads | Wildfire smoke | Costco recall
US>CA Polar vortex | Netflix price hike | March Madness | Tariff news | Prime Day
AR>CL Copa Libertadores | Nevadas en la cordillera | Paso Cristo Redentor | Copa Sudamericana
AR>CL Incendios en la Patagonia | Precio del litio | Lollapalooza | Temporada de ski
AR>CL Vendimia | Clásico andino
ES>PT Real Madrid | Iberian heatwave | La Vuelta | Primavera Sound | Atlético vs Benfica
ES>PT Ryanair strike | Barça vs Sporting | Apagón | Mercado de fichajes | Champions ibérica
DE>NL Rhine water level | Zandvoort GP | Dortmund vs Ajax | Bundesliga | Deutsche Bahn delays
DE>NL Storm Zoltan | ASML | Bayern vs PSV | Gas storage | Carnival Cologne
JP>KR Nintendo Direct | Tokyo Game Show | K-pop comeback | Japan vs Korea | Final Fantasy
JP>KR Typhoon Kajiki | Genshin update | Anime Awards | Busan Film Festival | Pokémon Presents
SA>AE Riyadh Season | Saudi Pro League | Gulf Cup | Formula 1 Jeddah | Abu Dhabi Grand Prix
SA>AE Hajj | Eid holidays | OPEC+ cut | Gold price Gulf | Gitex
AU>NZ Bledisloe Cup | Super Rugby Pacific | Trans-Tasman | Qantas outage
AU>NZ Black Caps vs Australia | Anzac Day | Cyclone Alfred | Constellation Cup
AU>NZ Great Barrier Reef | Tasman storm
"""

# Region-wide topics: start in one country and reach most of its region.
_REGIONAL_TABLE = """
americas  Copa América | Hurricane Delia | Latin Grammys | El Niño | OAS summit
americas  Pan American Games | Mercosur
europe    Champions League draw | Eurovision | ECB rate decision | Storm Isolde | EU summit
europe    Ballon d'Or | Ryder Cup
asia      Typhoon Haikui | ASEAN summit | Asian Games | AFC Asian Cup | Lunar New Year
asia      Galaxy launch | Shopee sale
africa_me AFCON | OPEC meeting | CAF Champions League | Brent crude | Africa Day
africa_me Desert locusts | Afrobeats awards
"""

# Global topics: where each starts, and the label variants countries report it under.
_GLOBAL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("US", ("World Cup", "world cup", "World Cup", "World Cup")),
    ("GB", ("iPhone launch", "iPhone Launch")),
    ("JP", ("Oscars",)),
    ("IN", ("Bitcoin",)),
    ("BR", ("ChatGPT outage", "ChatGPT Outage")),
    ("FR", ("Solar eclipse",)),
)


@dataclass(frozen=True, slots=True)
class Country:
    """One country of the demo: its size, local topic volume, news sites and topics."""

    code: str
    region: str
    utc_offset: float
    size: float
    local_series: int
    local_scale: float
    news: tuple[str, ...]
    local: tuple[str, ...] = ()
    clubs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class World:
    """Every country, and which topics each corridor and region shares."""

    countries: tuple[Country, ...]
    corridors: dict[tuple[str, str], tuple[str, ...]]  # (leader, follower) -> topics
    regional: dict[str, tuple[str, ...]]  # region -> topics
    leader_of: dict[str, str]  # follower -> leader
    global_topics: tuple[tuple[str, tuple[str, ...]], ...]  # (origin, label variants)


def _rows(table: str) -> list[tuple[str, list[str]]]:
    """Each line of a table as (its first word, the "|"-separated items after it)."""
    rows: list[tuple[str, list[str]]] = []
    for line in table.strip().splitlines():
        head, rest = line.split(maxsplit=1)
        rows.append((head, [item.strip() for item in rest.split("|")]))
    return rows


@functools.cache
def demo_world() -> World:
    """The world the tables describe (read once)."""
    local: dict[str, list[str]] = {}
    clubs: dict[str, list[str]] = {}
    for code, items in _rows(_LOCAL_TABLE):
        if items[0].startswith("clubs:"):
            clubs[code] = [items[0].removeprefix("clubs:").strip(), *items[1:]]
        else:
            local.setdefault(code, []).extend(items)
    countries = []
    for line in _COUNTRY_TABLE.strip().splitlines():
        code, region, offset, size, series, scale, *news = line.split()
        countries.append(
            Country(
                code,
                region,
                float(offset),
                float(size),
                int(series),
                float(scale),
                tuple(news),
                tuple(local[code]),
                tuple(clubs[code]),
            )
        )
    corridors: dict[tuple[str, str], list[str]] = {}
    for pair, items in _rows(_CORRIDOR_TABLE):
        leader, follower = pair.split(">")
        corridors.setdefault((leader, follower), []).extend(items)
    regional: dict[str, list[str]] = {}
    for region, items in _rows(_REGIONAL_TABLE):
        regional.setdefault(region, []).extend(items)
    return World(
        countries=tuple(countries),
        corridors={pair: tuple(items) for pair, items in corridors.items()},
        regional={region: tuple(items) for region, items in regional.items()},
        leader_of={follower: leader for leader, follower in corridors},
        global_topics=_GLOBAL,
    )
