// klingctl: the command-line client of klingd (docs/contract.md §4.2).
#include "cli/commands.hpp"
#include "common/version.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <iostream>

using namespace klingd::cli;

int main(int argc, char** argv)
{
  CLI::App app{"klingctl: submit and follow Kling video jobs run by klingd"};
  app.set_version_flag("--version", std::string(klingd::version()));
  app.require_subcommand(1);
  Globals g;
  app.add_option("--socket", g.socket, "klingd's socket (default: $KLINGD_SOCKET, $XDG_RUNTIME_DIR/klingd.sock, "
                                       "/run/klingd/klingd.sock)");
  app.add_flag("--json", g.json, "print the API's JSON answers as they are");

  SubmitOptions so;
  auto* submit = app.add_subcommand("submit", "submit one job from flags, or many with -f FILE (one spec per line)");
  submit->add_option("--model", so.model, "model id (klingctl models)");
  submit->add_option("--prompt", so.prompt, "the prompt");
  submit->add_option("--multi-prompt", so.multi_prompt, "one prompt per shot (repeatable)")->take_all();
  submit->add_option("--image", so.image, "first frame: a file (sent inline) or an https URL");
  submit->add_option("--tail-image", so.tail_image, "last frame: a file or an https URL");
  submit->add_option("--images", so.images, "images for multi-image models: files or URLs")->expected(1, -1);
  submit->add_option("--duration", so.duration, "seconds");
  submit->add_option("--aspect-ratio", so.aspect_ratio, "16:9, 9:16, 1:1 …");
  submit->add_option("--negative-prompt", so.negative_prompt, "what to avoid");
  submit->add_option("--cfg-scale", so.cfg_scale, "0 to 1");
  submit->add_flag("--no-audio", so.no_audio, "generate_audio: false");
  submit->add_option("--shot-type", so.shot_type, "customize or intelligent");
  submit->add_option("--key", so.key, "idempotency key: submitting it again creates nothing");
  submit->add_option("--output", so.output, "relative path of the MP4 under the videos directory");
  submit->add_option("--priority", so.priority, "higher runs first (-1000 to 1000)");
  submit->add_option("--label", so.labels, "NAME=VALUE (repeatable)")->take_all();
  submit->add_flag("--wait", so.wait, "wait until the jobs end (exit 1 if any failed)");
  submit->add_option("-f,--file", so.file, "job specs, one JSON object per line ('-': stdin); a line without "
                                           "\"request\" is the request itself");
  submit->add_option("--csv", so.csv, "one job per CSV row; columns are spec fields (model, prompt, duration, key, "
                                      "output, priority, timeout_s, labels.NAME, request.NAME …)");
  submit->add_option("--template", so.template_file, "a job spec (or request) whose string values hold {column} "
                                                     "placeholders, filled from each row of --vars");
  submit->add_option("--vars", so.vars, "the CSV whose rows fill --template in");
  submit->add_option("--max-usd", so.max_usd, "with --csv/--template: the batch's budget (max_usd)");
  submit->add_flag("--dry-run", so.dry_run, "only ask klingd what it would store: jobs, duplicates, expected cost "
                                           "per model; nothing is stored");
  submit->add_option("--confirm-over", so.confirm_over, "with --csv/--template: more new jobs than this need --yes "
                                                        "(default 100)");
  submit->add_flag("--yes", so.yes, "submit a --csv/--template batch past the confirmation gate (--confirm-over, "
                                    "expected cost above --max-usd); otherwise exit 4");

  ListOptions lo;
  auto* ls = app.add_subcommand("ls", "list jobs");
  ls->add_option("--state", lo.state, "states, comma separated (queued,submitting,generating,downloading,"
                                      "completed,failed,canceled)");
  ls->add_option("--batch", lo.batch, "only this batch");
  ls->add_option("--label", lo.label, "NAME=VALUE");
  ls->add_option("--limit", lo.limit, "jobs per page (1 to 1000, default 100)")->check(CLI::Range(1, 1000));
  ls->add_flag("--all", lo.all, "follow the cursor through every page");

  std::string id;
  auto* show = app.add_subcommand("show", "one job with its history (ID or key:KEY)");
  show->add_option("ID", id, "job id, or key:KEY")->required();

  std::vector<std::string> wait_ids;
  std::string wait_batch;
  auto* wait = app.add_subcommand("wait", "wait until jobs end (exit 1 if any failed or was canceled)");
  wait->add_option("ID", wait_ids, "job ids (or key:KEY)");
  wait->add_option("--batch", wait_batch, "every job of this batch");

  BulkOptions bo;
  bool bulk_failed = false;
  bool bulk_canceled = false;
  auto* cancel = app.add_subcommand("cancel", "cancel a job that has not ended, or every such job of a batch");
  cancel->add_option("ID", id, "job id, or key:KEY");
  auto* retry = app.add_subcommand("retry", "re-queue a failed or canceled job, or such jobs of a batch");
  retry->add_option("ID", id, "job id, or key:KEY");
  for (auto* sub : {cancel, retry}) {
    sub->add_option("--batch", bo.batch, "every matching job of this batch (instead of ID)");
    sub->add_option("--label", bo.labels, "with --batch: only jobs with this label, NAME=VALUE (repeatable)")->take_all();
    sub->add_flag("--dry-run", bo.dry_run, "with --batch: only count and list the jobs it would act on");
  }
  retry->add_flag("--failed", bulk_failed, "with --batch: only failed jobs");
  retry->add_flag("--canceled", bulk_canceled, "with --batch: only canceled jobs");

  std::optional<long long> since;
  auto* watch = app.add_subcommand("watch", "follow state changes as they happen");
  watch->add_option("--since", since, "replay events after this sequence number first");

  auto* status = app.add_subcommand("status", "the daemon's state, limits and job counts");
  std::string reason;
  auto* pause = app.add_subcommand("pause", "stop dispatching new create calls (polls and downloads go on)");
  pause->add_option("--reason", reason, "shown in status");
  auto* resume = app.add_subcommand("resume", "dispatch again");
  auto* models = app.add_subcommand("models", "the models klingd accepts");
  ModelsOptions mo;
  models->add_flag("--check", mo.check,
                   "compare the catalog with the provider's price list (GET /v1/models?include=pricing; needs a key: "
                   "AIMLAPI_KEY or $CREDENTIALS_DIRECTORY/aimlapi_key; AIMLAPI_BASE_URL overrides the address)");
  models->add_option("--pricing-file", mo.pricing_file, "with --check: compare with this saved answer instead of asking the provider");
  auto* cost = app.add_subcommand("cost", "what the videos cost, by day, model, batch and label");
  bool prune_dry_run = false;
  auto* prune = app.add_subcommand("prune", "prune finished jobs older than store.retention says, now");
  prune->add_flag("--dry-run", prune_dry_run, "only show what would be pruned");
  auto* dashboard = app.add_subcommand("dashboard", "print the web dashboard's address (with its access token)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : k_exit_usage;
  }

  try {
    if (*wait && wait_ids.empty() == wait_batch.empty()) {
      throw CliExit(k_exit_usage, "wait: give job ids or --batch ID (not both)");
    }
    Session s(g);
    if (*submit) {
      return cmd_submit(s, so);
    }
    if (*ls) {
      return cmd_ls(s, lo);
    }
    if (*show) {
      return cmd_show(s, id);
    }
    if (*wait) {
      return cmd_wait(s, wait_ids, wait_batch);
    }
    if ((*cancel || *retry) && id.empty() == bo.batch.empty()) {
      throw CliExit(k_exit_usage, fmt::format("{}: give a job ID or --batch ID (not both)", *cancel ? "cancel" : "retry"));
    }
    if ((*cancel || *retry) && bo.batch.empty() && (bo.dry_run || !bo.labels.empty() || bulk_failed || bulk_canceled)) {
      throw CliExit(k_exit_usage, "--label, --dry-run, --failed and --canceled go with --batch");
    }
    if (bulk_failed) {
      bo.states.emplace_back("failed");
    }
    if (bulk_canceled) {
      bo.states.emplace_back("canceled");
    }
    if (*cancel) {
      return bo.batch.empty() ? cmd_cancel(s, id) : cmd_bulk(s, "cancel", bo);
    }
    if (*retry) {
      return bo.batch.empty() ? cmd_retry(s, id) : cmd_bulk(s, "retry", bo);
    }
    if (*watch) {
      return cmd_watch(s, since);
    }
    if (*status) {
      return cmd_status(s);
    }
    if (*pause) {
      return cmd_pause(s, reason);
    }
    if (*resume) {
      return cmd_resume(s);
    }
    if (*models) {
      return cmd_models(s, mo);
    }
    if (*cost) {
      return cmd_cost(s);
    }
    if (*prune) {
      return cmd_prune(s, prune_dry_run);
    }
    if (*dashboard) {
      return cmd_dashboard(s);
    }
  } catch (const CliExit& e) {
    if (*e.what()) {
      std::cerr << "klingctl: " << e.what() << '\n';
    }
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "klingctl: " << e.what() << '\n';
    return k_exit_failed;
  }
  return k_exit_usage;
}
