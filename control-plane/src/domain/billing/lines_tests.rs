//! Worked billing examples, each checked by hand in its comment. Dates are 2026; November has 30
//! days, October 31. Plans: Basic 30.00/month with a 10.00 setup fee and "hits" priced
//! graduated (1–1,000 free, then 0.01); Pro 90.00/month, no setup fee, the same hits pricing.

use super::*;
use crate::domain::billing::calendar::parse_date;
use crate::domain::billing::test_support::d;
use crate::domain::billing::totals::settle;

fn day(s: &str) -> i64 {
    parse_date(s).unwrap()
}
fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn hits() -> MetricPricing {
    MetricPricing {
        metric_id: "m_hits".into(),
        metric_name: "hits".into(),
        model: PricingModel::Graduated,
        tiers: vec![
            Tier {
                from: 1,
                to: Some(1000),
                unit_price: d("0"),
                package_size: None,
            },
            Tier {
                from: 1001,
                to: None,
                unit_price: d("0.01"),
                package_size: None,
            },
        ],
    }
}
fn basic() -> PlanTerms {
    PlanTerms {
        id: "basic".into(),
        name: "Basic".into(),
        setup_fee: d("10"),
        fixed_fee: d("30"),
        metrics: vec![hits()],
    }
}
fn pro() -> PlanTerms {
    PlanTerms {
        id: "pro".into(),
        name: "Pro".into(),
        setup_fee: d("0"),
        fixed_fee: d("90"),
        metrics: vec![hits()],
    }
}
fn contract(id: &str, plan: &str, starts: &str, ends: Option<&str>, trial_ends: &str) -> Contract {
    Contract {
        id: id.into(),
        application_id: "app".into(),
        application_name: "My app".into(),
        plan_id: plan.into(),
        starts_on: day(starts),
        ends_on: ends.map(day),
        trial_ends_on: day(trial_ends),
    }
}

/// 100 hits every day of every month.
fn hundred_a_day(_: &str, from: i64, to: i64) -> u64 {
    ((to - from) * 100) as u64
}

fn sum(lines: &[NewLine]) -> Decimal {
    lines.iter().map(|l| l.amount).sum()
}

fn run(
    mode: Mode,
    on: &str,
    c: &Contract,
    plan: &PlanTerms,
    billed: &mut BilledKeys,
) -> Vec<NewLine> {
    let lines = due_lines(mode, day(on), c, plan, usd(), billed, &hundred_a_day).unwrap();
    record(billed, &lines);
    lines
}

/// Postpaid, a whole October on Basic, 3,100 hits (100 a day for 31 days):
/// setup 10.00 + fee 30.00 + hits 1,000 free + 2,100 × 0.01 = 21.00 -> 61.00.
/// 19% VAT: 11.59; total 72.59. A second run the same day, or the next day, bills nothing.
#[test]
fn postpaid_month() {
    let c = contract("c1", "basic", "2026-10-01", None, "2026-10-01");
    let mut billed = BilledKeys::new();
    let lines = run(Mode::Postpaid, "2026-11-01", &c, &basic(), &mut billed);
    let amounts: Vec<_> = lines.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, vec![d("10.00"), d("30.00"), d("0.00"), d("21.00")]);
    let s = settle(sum(&lines), d("0"), d("19"), usd());
    assert_eq!(
        (s.totals.subtotal, s.totals.tax, s.totals.total),
        (d("61.00"), d("11.59"), d("72.59"))
    );
    assert!(run(Mode::Postpaid, "2026-11-01", &c, &basic(), &mut billed).is_empty());
    assert!(run(Mode::Postpaid, "2026-11-02", &c, &basic(), &mut billed).is_empty());
    // Nothing of November is billed before December.
    assert!(run(Mode::Postpaid, "2026-11-30", &c, &basic(), &mut billed).is_empty());
}

/// Prepaid, signed up on 2026-10-01: the October run bills setup 10.00 + October 30.00; the
/// November run bills November's fee 30.00 in advance plus October's usage 21.00 = 51.00.
#[test]
fn prepaid_month() {
    let c = contract("c1", "basic", "2026-10-01", None, "2026-10-01");
    let mut billed = BilledKeys::new();
    let oct = run(Mode::Prepaid, "2026-10-01", &c, &basic(), &mut billed);
    assert_eq!(sum(&oct), d("40.00"));
    let nov = run(Mode::Prepaid, "2026-11-01", &c, &basic(), &mut billed);
    assert_eq!(
        nov.iter().filter(|l| l.kind == LineKind::FixedFee).count(),
        1
    );
    assert_eq!(sum(&nov), d("51.00"));
    assert!(run(Mode::Prepaid, "2026-11-15", &c, &basic(), &mut billed).is_empty());
}

/// Signed up 2026-11-01 with a 14-day trial: billing starts 2026-11-15, 16 of November's 30 days.
/// Fee 30 × 16/30 = 16.00; hits 16 × 100 = 1,600: 600 × 0.01 = 6.00; setup 10.00.
/// Postpaid (run 2026-12-01): 10.00 + 16.00 + 0.00 + 6.00 = 32.00.
/// Prepaid: nothing on 2026-11-01 or 11-14; on 2026-11-15 setup + 16.00 = 26.00; on 2026-12-01
/// December's 30.00 + November's usage 6.00.
#[test]
fn trial_ending_mid_month() {
    let c = contract("c1", "basic", "2026-11-01", None, "2026-11-15");
    let mut billed = BilledKeys::new();
    let lines = run(Mode::Postpaid, "2026-12-01", &c, &basic(), &mut billed);
    assert_eq!(sum(&lines), d("32.00"));
    assert!(
        lines[1]
            .description
            .contains("2026-11-15 to 2026-11-30 (16 of 30 days)"),
        "{}",
        lines[1].description
    );

    let mut billed = BilledKeys::new();
    assert!(run(Mode::Prepaid, "2026-11-01", &c, &basic(), &mut billed).is_empty());
    assert!(run(Mode::Prepaid, "2026-11-14", &c, &basic(), &mut billed).is_empty());
    assert_eq!(
        sum(&run(Mode::Prepaid, "2026-11-15", &c, &basic(), &mut billed)),
        d("26.00")
    );
    assert_eq!(
        sum(&run(Mode::Prepaid, "2026-12-01", &c, &basic(), &mut billed)),
        d("36.00")
    );
}

/// Ended during the trial: nothing is ever owed.
#[test]
fn cancelled_in_trial_owes_nothing() {
    let c = contract(
        "c1",
        "basic",
        "2026-11-01",
        Some("2026-11-10"),
        "2026-11-15",
    );
    let mut billed = BilledKeys::new();
    assert!(run(Mode::Prepaid, "2026-11-20", &c, &basic(), &mut billed).is_empty());
    assert!(run(Mode::Postpaid, "2026-12-01", &c, &basic(), &mut billed).is_empty());
}

/// Upgrade Basic -> Pro on 2026-11-16 (contracts since October, setup already billed).
/// Postpaid, run 2026-12-01: Basic 30 × 15/30 = 15.00 + Pro 90 × 15/30 = 45.00; hits 1,500 on
/// each contract (tiers restart per contract): 500 × 0.01 = 5.00 each -> 70.00.
/// Prepaid: 2026-11-01 bills Basic's November 30.00; on 2026-11-16 Basic's unused 15 days are
/// credited (-15.00) and Pro's 15 days billed (45.00) -> 30.00 due.
#[test]
fn upgrade_mid_month_both_modes() {
    let old = contract(
        "c1",
        "basic",
        "2026-10-01",
        Some("2026-11-16"),
        "2026-10-01",
    );
    let new = contract("c2", "pro", "2026-11-16", None, "2026-10-01");
    let mut billed = BilledKeys::new();
    billed.insert(setup_key("c1"), None);
    billed.insert(fixed_key("c1", day("2026-10-01")), None);
    billed.insert(usage_key("c1", "m_hits", day("2026-10-01"), 0), None);
    let mut post = billed.clone();
    let a = run(Mode::Postpaid, "2026-12-01", &old, &basic(), &mut post);
    let b = run(Mode::Postpaid, "2026-12-01", &new, &pro(), &mut post);
    assert_eq!((sum(&a), sum(&b)), (d("20.00"), d("50.00")));

    let mut pre = billed.clone();
    let before = contract("c1", "basic", "2026-10-01", None, "2026-10-01");
    assert_eq!(
        sum(&run(
            Mode::Prepaid,
            "2026-11-01",
            &before,
            &basic(),
            &mut pre
        )),
        d("30.00")
    );
    let credit = run(Mode::Prepaid, "2026-11-16", &old, &basic(), &mut pre);
    assert_eq!(credit.len(), 1);
    assert_eq!(credit[0].kind, LineKind::UnusedTimeCredit);
    assert_eq!(credit[0].amount, d("-15.00"));
    let charge = run(Mode::Prepaid, "2026-11-16", &new, &pro(), &mut pre);
    assert_eq!(sum(&charge), d("45.00"));
    let s = settle(sum(&credit) + sum(&charge), d("0"), d("0"), usd());
    assert_eq!(s.totals.total, d("30.00"));
    // The credit is given once.
    assert!(run(Mode::Prepaid, "2026-11-17", &old, &basic(), &mut pre).is_empty());
}

/// Downgrade Pro -> Basic on 2026-11-16 (both started before November, setup billed).
/// Postpaid: Pro 45.00 + Basic 15.00 (+ 5.00 usage each) = 70.00.
/// Prepaid: Pro's November 90.00 paid on 11-01; on 11-16 Pro's unused 15 days -45.00, Basic's 15
/// days +15.00: -30.00, so the invoice is 0.00 and 30.00 goes to the credit balance; December's
/// invoice (Basic 30.00 + November's usage: Pro 5.00, Basic 5.00 = 40.00) uses it: 10.00 due.
#[test]
fn downgrade_mid_month_both_modes() {
    let old = contract("c1", "pro", "2026-10-01", Some("2026-11-16"), "2026-10-01");
    let new = contract("c2", "basic", "2026-11-16", None, "2026-10-01");
    let mut billed = BilledKeys::new();
    billed.insert(setup_key("c2"), None);
    let mut post = billed.clone();
    let a = run(Mode::Postpaid, "2026-12-01", &old, &pro(), &mut post);
    let b = run(Mode::Postpaid, "2026-12-01", &new, &basic(), &mut post);
    assert_eq!(sum(&a) + sum(&b), d("70.00"));

    let mut pre = billed.clone();
    // Pro's October was paid too; November is paid on 11-01.
    pre.insert(fixed_key("c1", day("2026-10-01")), None);
    pre.insert(usage_key("c1", "m_hits", day("2026-09-01"), 0), None);
    let before = contract("c1", "pro", "2026-10-01", None, "2026-10-01");
    let nov1 = run(Mode::Prepaid, "2026-11-01", &before, &pro(), &mut pre);
    assert_eq!(
        nov1.iter()
            .filter(|l| l.kind == LineKind::FixedFee)
            .map(|l| l.amount)
            .sum::<Decimal>(),
        d("90.00")
    );
    let mut lines = run(Mode::Prepaid, "2026-11-16", &old, &pro(), &mut pre);
    lines.extend(run(Mode::Prepaid, "2026-11-16", &new, &basic(), &mut pre));
    assert_eq!(sum(&lines), d("-30.00"));
    let s = settle(sum(&lines), d("0"), d("19"), usd());
    assert_eq!(s.totals.total, d("0.00"));
    assert_eq!(s.balance_after, d("30.00"));
    let mut dec = run(Mode::Prepaid, "2026-12-01", &old, &pro(), &mut pre);
    dec.extend(run(Mode::Prepaid, "2026-12-01", &new, &basic(), &mut pre));
    assert_eq!(sum(&dec), d("40.00"));
    let s = settle(sum(&dec), s.balance_after, d("0"), usd());
    assert_eq!((s.totals.total, s.balance_after), (d("10.00"), d("0")));
}

/// Cancelled (application deleted) on 2026-11-10: the contract ends 11-11 (the day is billed).
/// Postpaid December run: 30 × 10/30 = 10.00 + 1,000 hits (free) = 10.00.
#[test]
fn cancellation_prorates() {
    let c = contract(
        "c1",
        "basic",
        "2026-10-01",
        Some("2026-11-11"),
        "2026-10-01",
    );
    let mut billed = BilledKeys::new();
    billed.insert(setup_key("c1"), None);
    billed.insert(fixed_key("c1", day("2026-10-01")), None);
    billed.insert(usage_key("c1", "m_hits", day("2026-10-01"), 0), None);
    let lines = run(Mode::Postpaid, "2026-12-01", &c, &basic(), &mut billed);
    assert_eq!(sum(&lines), d("10.00"));
    assert!(run(Mode::Postpaid, "2027-01-01", &c, &basic(), &mut billed).is_empty());
}

/// Prepaid, changed plan on the day the contract started (and was billed): the contract is
/// empty, so everything it paid is credited: 3000 JPY × 6/30 = 600 back.
#[test]
fn same_day_change_credits_everything_paid() {
    let jpy = Currency::parse("JPY").unwrap();
    let open = contract("c1", "basic", "2026-11-25", None, "2026-11-25");
    let plan = PlanTerms {
        fixed_fee: d("3000"),
        setup_fee: d("0"),
        ..basic()
    };
    let mut billed = BilledKeys::new();
    let paid = due_lines(
        Mode::Prepaid,
        day("2026-11-25"),
        &open,
        &plan,
        jpy,
        &billed,
        &|_, _, _| 0,
    )
    .unwrap();
    assert_eq!(sum(&paid), d("600"));
    record(&mut billed, &paid);
    let ended = contract(
        "c1",
        "basic",
        "2026-11-25",
        Some("2026-11-25"),
        "2026-11-25",
    );
    let credit = due_lines(
        Mode::Prepaid,
        day("2026-11-25"),
        &ended,
        &plan,
        jpy,
        &billed,
        &|_, _, _| 0,
    )
    .unwrap();
    assert_eq!(credit.len(), 1);
    assert_eq!(credit[0].amount, d("-600"));
}
