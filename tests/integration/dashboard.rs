//! The dashboard page shows the same numbers as GetCampaignReport, offers
//! by name, budget status, labelled axes and the verdict line, in the
//! served HTML and in what headless Chromium renders of it.

use offer_bandit::proto::CampaignReport;

use crate::support::{TestServer, http_get, redeem, select};

/// The number in `<td class="{class}">N</td>` of the row tagged `{attr}="{key}"`.
fn cell(html: &str, attr: &str, key: &str, class: &str) -> u64 {
    let row_start = html
        .find(&format!("<tr {attr}=\"{key}\">"))
        .unwrap_or_else(|| panic!("no row {attr}={key}"));
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>").expect("row end")];
    let open = format!("<td class=\"{class}\">");
    let at = row.find(&open).expect("cell") + open.len();
    row[at..row[at..].find('<').expect("cell end") + at]
        .parse()
        .expect("a number")
}

/// The text of `<td class="{class}">TEXT</td>` in the row tagged `{attr}="{key}"`.
fn text_cell<'a>(html: &'a str, attr: &str, key: &str, class: &str) -> &'a str {
    let row_start = html
        .find(&format!("<tr {attr}=\"{key}\">"))
        .unwrap_or_else(|| panic!("no row {attr}={key}"));
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>").expect("row end")];
    let open = format!("<td class=\"{class}\">");
    let at = row.find(&open).expect("cell") + open.len();
    &row[at..row[at..].find('<').expect("cell end") + at]
}

/// The text inside the element with `id="{id}"`, tags removed.
fn text_of(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[start..];
    let body = &rest[rest.find('>').expect("tag end") + 1..rest.find("</p>").expect("p end")];
    let mut text = String::new();
    let mut in_tag = false;
    for ch in body.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

fn check(html: &str, r: &CampaignReport) {
    // Offers by name; budget status: `c` spent its lifetime budget of 5,
    // `b` its paced daily allowance of 1, `a` has none.
    assert_eq!(text_cell(html, "data-offer", "a", "name"), "Free coffee");
    assert_eq!(text_cell(html, "data-offer", "b", "name"), "Bagel deal");
    assert_eq!(text_cell(html, "data-budget", "a", "status"), "open");
    assert_eq!(text_cell(html, "data-budget", "b", "status"), "paced");
    assert_eq!(text_cell(html, "data-budget", "c", "status"), "spent");
    // Pacing in the campaign's own time zone, as the report says.
    let pacing = text_of(html, "pacing");
    let zone = r.pacing.as_ref().map_or("", |p| p.time_zone.as_str());
    assert_eq!(zone, "America/New_York");
    assert!(
        pacing.contains("in America/New_York: it is 20")
            && (pacing.contains(" EST") || pacing.contains(" EDT"))
            && pacing.contains("flat over the day"),
        "{pacing}"
    );
    // The verdict line, in redemptions per 1,000 visits, with the report's
    // number.
    let uplift = r.uplift.as_ref().expect("uplift");
    let difference = uplift.rate_difference.as_ref().expect("difference");
    let verdict = text_of(html, "verdict");
    assert!(
        verdict.starts_with(&format!(
            "Personalization earns {:+.1} redemptions per 1,000 visits over the control group",
            1000.0 * difference.value
        )),
        "{verdict}"
    );
    assert!(verdict.contains("95% interval"), "{verdict}");
    // Axes with titles on both charts; the arms outside the comparison apart.
    for axis in [
        "y axis: redemption rate",
        "x axis: group",
        "y axis: share of decisions",
        "x axis: time (UTC)",
    ] {
        assert!(html.contains(&format!("aria-label=\"{axis}\"")), "{axis}");
    }
    assert!(html.contains("<table id=\"other-arms\">"));
    assert!(html.contains("<tr data-arm=\"fallback\">"));
    for arm in [
        r.bandit.as_ref().expect("bandit"),
        r.control.as_ref().expect("control"),
    ] {
        assert_eq!(cell(html, "data-arm", &arm.arm, "decisions"), arm.decisions);
        assert_eq!(
            cell(html, "data-arm", &arm.arm, "redemptions"),
            arm.redemptions
        );
    }
    for o in &r.offers {
        assert_eq!(
            cell(html, "data-offer", &o.offer_id, "decisions"),
            o.decisions
        );
        assert_eq!(
            cell(html, "data-offer", &o.offer_id, "redemptions"),
            o.redemptions
        );
    }
    // The intervals say they stay valid at any look, and are clustered.
    let note = text_of(html, "any-look");
    assert!(
        note.contains("stay valid at any look") && note.contains("clustered by customer"),
        "{note}"
    );
    assert!(!html.contains("single look"));
    for arm in [
        r.bandit.as_ref().expect("bandit"),
        r.control.as_ref().expect("control"),
    ] {
        assert_eq!(
            cell(html, "data-arm", &arm.arm, "closed"),
            arm.closed_decisions
        );
        assert_eq!(cell(html, "data-arm", &arm.arm, "customers"), arm.customers);
    }
    assert!(html.contains("aria-label=\"redemption rate by arm\""));
    assert!(html.contains("aria-label=\"offer share over time\""));
}

#[tokio::test]
async fn the_dashboard_matches_the_report() {
    let config = crate::support::campaign_toml("d", &[], "2s", &["a", "b", "c"])
        .replace(
            "reward_window = \"2s\"\n",
            "reward_window = \"2s\"\ncontrol_share = 0.3\ntime_zone = \"America/New_York\"\n",
        )
        .replace("id = \"a\"\n", "id = \"a\"\nname = \"Free coffee\"\n")
        .replace(
            "id = \"b\"\n",
            "id = \"b\"\nname = \"Bagel deal\"\nmax_decisions_per_day = 1\n",
        )
        .replace("id = \"c\"\n", "id = \"c\"\nmax_decisions = 5\n");
    let server = TestServer::start(Some(&config), &["--sweep-interval", "100ms"]);
    let mut offers = server.offers().await;
    for i in 0..300 {
        let mut req = select("d", &[]);
        req.customer_id = format!("m{i}");
        let d = offers.select_offer(req).await.expect("select").into_inner();
        if d.offer_id == "a" || i % 7 == 0 {
            offers
                .record_redemption(redeem(&d.decision_id))
                .await
                .expect("redeem");
        }
    }
    // The verdict counts closed windows: wait for them all.
    let report = crate::uplift::report_when_closed(&mut server.admin().await, "d").await;
    let (head, index) = http_get(&server.metrics_addr, "/");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/html"),
        "{head}"
    );
    assert!(index.contains("href=\"/campaigns/d\""));
    let (head, page) = http_get(&server.metrics_addr, "/campaigns/d");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    check(&page, &report);
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    let (_, still) = http_get(&server.metrics_addr, "/campaigns/d?refresh=off");
    assert!(!still.contains("http-equiv=\"refresh\""));
    let (head, _) = http_get(&server.metrics_addr, "/campaigns/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The same numbers in what a browser renders.
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: .ci/run installs Debian's chromium"
        );
        eprintln!(
            "skipping the headless-Chromium half of this test: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let profile = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{}/campaigns/d", server.metrics_addr))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&String::from_utf8_lossy(&out.stdout), &report);
}
