//! Invoice PDFs: one A4 document per invoice or credit note with seller, buyer, number, dates,
//! lines, VAT, total and footer, written with `pdf-writer` in the standard Helvetica fonts
//! (WinAnsi encoding: characters outside Latin-1 print as `?`). Long invoices continue on further
//! pages.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use serde_json::Value;

use super::calendar::format_date;
use super::invoices::{self, plain, Invoice, InvoiceKind, Line};
use crate::domain::DomainResult;
use crate::store::Pool;

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;
/// Below this height a page is full and the lines continue on the next one.
const BOTTOM: f32 = 110.0;
/// Characters of a line description per printed row (longer ones wrap).
const DESCRIPTION_CHARS: usize = 58;

/// `(file name stem, PDF bytes)` of invoice `id`.
pub async fn invoice_pdf(pool: &Pool, id: &str) -> DomainResult<(String, Vec<u8>)> {
    let inv = invoices::fetch(pool, id).await?;
    let lines = invoices::lines(pool, id).await?;
    let stem = inv
        .number
        .clone()
        .unwrap_or_else(|| format!("draft-{}", inv.id));
    Ok((stem, render(&inv, &lines)))
}

/// Latin-1 bytes for WinAnsi-encoded standard fonts.
fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '–' => 0x96,
            '—' => 0x97,
            '€' => 0x80,
            '×' => 0xD7,
            c if (c as u32) < 0x20 => b' ',
            c if (c as u32) <= 0xFF => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

/// Approximate Helvetica advance width (1/1000 em), enough to right-align amounts.
fn width(s: &str, size: f32) -> f32 {
    let units: u32 = s
        .chars()
        .map(|c| match c {
            '0'..='9' => 556,
            '.' | ',' | ' ' | ':' => 278,
            '-' => 333,
            'A'..='Z' => 667,
            _ => 556,
        })
        .sum();
    units as f32 * size / 1000.0
}

struct Writer {
    pages: Vec<Content>,
    y: f32,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            pages: vec![Content::new()],
            y: PAGE_H - MARGIN,
        }
    }

    fn text(&mut self, font: &[u8], size: f32, x: f32, s: &str) {
        if let Some(c) = self.pages.last_mut() {
            c.begin_text();
            c.set_font(Name(font), size);
            c.next_line(x, self.y);
            c.show(Str(&latin1(s)));
            c.end_text();
        }
    }

    fn right(&mut self, font: &[u8], size: f32, right_x: f32, s: &str) {
        self.text(font, size, right_x - width(s, size), s);
    }

    fn rule(&mut self) {
        let y = self.y + 10.0;
        if let Some(c) = self.pages.last_mut() {
            c.set_line_width(0.5);
            c.move_to(MARGIN, y);
            c.line_to(PAGE_W - MARGIN, y);
            c.stroke();
        }
    }

    fn down(&mut self, by: f32) {
        self.y -= by;
        if self.y < BOTTOM {
            self.pages.push(Content::new());
            self.y = PAGE_H - MARGIN;
        }
    }
}

fn address_lines(v: Option<&Value>) -> Vec<String> {
    let Some(a) = v else { return Vec::new() };
    let get = |k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let city = [get("postal_code"), get("city")]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    [
        get("line1"),
        get("line2"),
        city,
        get("region"),
        get("country"),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect()
}

fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

pub fn render(inv: &Invoice, lines: &[Line]) -> Vec<u8> {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
    };
    let seller = parse(&inv.seller);
    let buyer = parse(&inv.buyer);
    let field = |v: &Option<Value>, k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let credit_note = inv.kind == InvoiceKind::CreditNote;
    let mut w = Writer::new();
    let right_edge = PAGE_W - MARGIN;

    w.text(
        b"F2",
        20.0,
        MARGIN,
        if credit_note {
            "CREDIT NOTE"
        } else {
            "INVOICE"
        },
    );
    let number = inv
        .number
        .clone()
        .unwrap_or_else(|| "(draft, not issued)".into());
    w.right(b"F2", 11.0, right_edge, &format!("No. {number}"));
    w.down(16.0);
    let mut facts = vec![format!(
        "Period: {} to {}",
        format_date(inv.period_start),
        format_date(inv.period_end - 1)
    )];
    if let Some(t) = inv.issued_at {
        facts.push(format!(
            "Issued: {}",
            format_date(super::calendar::day_of(t))
        ));
    }
    if let Some(d) = inv.due_on {
        facts.push(format!("Due: {}", format_date(d)));
    }
    facts.push(format!("Status: {}", inv.state));
    for f in facts {
        w.right(b"F1", 9.0, right_edge, &f);
        w.down(12.0);
    }
    w.down(10.0);

    // Seller (left) and buyer (right), side by side.
    let top = w.y;
    w.text(b"F2", 10.0, MARGIN, "From");
    w.down(13.0);
    let mut seller_lines = vec![field(&seller, "name")];
    seller_lines.extend(address_lines(
        seller.as_ref().and_then(|s| s.get("address")),
    ));
    let vat_id = field(&seller, "vat_id");
    if !vat_id.is_empty() {
        seller_lines.push(format!("VAT ID: {vat_id}"));
    }
    for l in seller_lines.iter().filter(|l| !l.is_empty()) {
        w.text(b"F1", 9.0, MARGIN, l);
        w.down(12.0);
    }
    let seller_bottom = w.y;
    w.y = top;
    let col = PAGE_W / 2.0;
    w.text(b"F2", 10.0, col, "Bill to");
    w.down(13.0);
    let mut buyer_lines = vec![field(&buyer, "name"), field(&buyer, "email")];
    buyer_lines.extend(address_lines(buyer.as_ref().and_then(|b| b.get("address"))));
    let vat_code = field(&buyer, "vat_code");
    if !vat_code.is_empty() {
        buyer_lines.push(format!("VAT ID: {vat_code}"));
    }
    for l in buyer_lines.iter().filter(|l| !l.is_empty()) {
        w.text(b"F1", 9.0, col, l);
        w.down(12.0);
    }
    w.y = w.y.min(seller_bottom);
    w.down(20.0);

    let (qty_x, price_x) = (right_edge - 170.0, right_edge - 85.0);
    w.text(b"F2", 9.0, MARGIN, "Description");
    w.right(b"F2", 9.0, qty_x, "Qty");
    w.right(b"F2", 9.0, price_x, "Unit price");
    w.right(
        b"F2",
        9.0,
        right_edge,
        &format!("Amount ({})", inv.currency.code),
    );
    w.down(6.0);
    w.rule();
    w.down(10.0);
    for l in lines {
        let rows = wrap(&l.description, DESCRIPTION_CHARS);
        for (i, row) in rows.iter().enumerate() {
            w.text(b"F1", 9.0, MARGIN, row);
            if i == 0 {
                w.right(b"F1", 9.0, qty_x, &plain(l.quantity));
                w.right(b"F1", 9.0, price_x, &plain(l.unit_price));
                w.right(b"F1", 9.0, right_edge, &inv.money(l.amount).to_string());
            }
            w.down(12.0);
        }
        w.down(2.0);
    }
    w.down(4.0);
    w.rule();
    w.down(6.0);
    // An invoice issued without VAT stores none: printed as 0%.
    let vat_rate = inv.vat_rate.map(plain).unwrap_or_else(|| "0".into());
    for (label, value, font) in [
        ("Subtotal".to_string(), inv.money(inv.subtotal), b"F1"),
        (format!("VAT {vat_rate}%"), inv.money(inv.tax), b"F1"),
        (
            format!("Total {}", inv.currency.code),
            inv.money(inv.total),
            b"F2",
        ),
    ] {
        w.right(font, 10.0, price_x, &label);
        w.right(font, 10.0, right_edge, &value.to_string());
        w.down(14.0);
    }
    w.down(10.0);
    let vat_zero_text = field(&seller, "vat_zero_text");
    if inv.vat_rate.is_some_and(|r| r.is_zero()) && !vat_zero_text.is_empty() {
        for row in wrap(&vat_zero_text, 100) {
            w.text(b"F1", 9.0, MARGIN, &row);
            w.down(12.0);
        }
    }
    if let Some(footer) = inv.footer.as_deref().filter(|f| !f.trim().is_empty()) {
        w.down(8.0);
        for para in footer.lines() {
            for row in wrap(para, 100) {
                w.text(b"F1", 8.0, MARGIN, &row);
                w.down(11.0);
            }
        }
    }

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let n = w.pages.len() as i32;
    let page_ids: Vec<Ref> = (0..n).map(|i| Ref::new(10 + 2 * i)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(n);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (i, content) in w.pages.into_iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Name(b"F1"), regular);
        fonts.pair(Name(b"F2"), bold);
        fonts.finish();
        resources.finish();
        page.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_encodes() {
        assert_eq!(wrap("a b c", 3), vec!["a b", "c"]);
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(
            latin1("Zürich – 5 × 2 € 日"),
            b"Z\xfcrich \x96 5 \xd7 2 \x80 ?".to_vec()
        );
    }
}
