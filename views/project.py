"""Project: open or create a project, edit its classes, see its counts and
skipped files, scan its folder again or follow it where it moved, choose
defaults, and import and export the labels."""

from __future__ import annotations

from dataclasses import replace as replace_plan
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from vaal_core import samplers
from vaal_core.config import IMAGE_SIZES
from vaal_core.data.images import image_root_problem, shown_path
from vaal_core.data.ingest import init_project, parse_classes
from vaal_core.data.relocate import Moved
from vaal_core.data.scan import hidden_words
from vaal_core.errors import BadInput, LabelConflict, VaalError
from vaal_core.loop.round import default_budget
from vaal_core.progress import Event
from vaal_core.services import label_words, labels_io, workspace
from vaal_core.services.labels_io import export_labels, labels_text
from vaal_core.store import is_project
from views import team
from views.agreement import team_section
from views.common import chart_text, conflict_text, plain, select_project, show_error, typed_path

project = st.session_state.get("project")
AUTHOR = team.current() or "user"  # who an import's labels are by, as the Label page's
st.title("Project")
if st.session_state.get("project_error"):
    st.error(plain(st.session_state["project_error"]))


def switch_to(path: str | Path) -> None:
    try:
        select_project(str(path))
    except VaalError as err:
        show_error(err)
        return
    for key in ("cursor", "label_round", "live_seen"):  # per-project positions
        st.session_state.pop(key, None)
    st.rerun()


def count(n: int, thing: str) -> str:
    """'1 label', '3 labels'."""
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


# -- open / create --------------------------------------------------------------

def open_section() -> None:
    known = workspace.known_projects()
    if known:
        labels = {k.id: f"{k.name}  ({k.path})" for k in known}
        current = workspace.project_id(project.root) if project is not None else None
        ids = list(labels)
        pick = st.selectbox("Recent projects", ids, index=ids.index(current) if current in ids else 0,
                            format_func=labels.get)
        if st.button("Open", icon=":material/folder_open:", disabled=pick == current):
            switch_to(next(k.path for k in known if k.id == pick))
    with st.form("open_path"):
        path = st.text_input("Or open a project folder by path", placeholder="/data/projects/birds")
        if st.form_submit_button("Open folder") and typed_path(path):
            switch_to(typed_path(path))
    if st.button("Open the digits demo", icon=":material/school:",
                 help="1,797 handwritten digits from scikit-learn, with hidden true labels for the Demo page"):
        from vaal_core.data.digits import create_demo_project

        with st.spinner("Writing the digits and building the demo project..."):
            try:
                path = create_demo_project(workspace.home())
            except (VaalError, OSError) as err:
                show_error(err)
                return
        switch_to(path)


def create_section() -> None:
    with st.form("create"):
        name = st.text_input("Project name", placeholder="birds-2026",
                             help=f"a folder of that name is made in {plain(workspace.projects_dir())}")
        images = st.text_input("Image folder", placeholder="/data/photos/birds",
                               help="scanned recursively; jpg, png, bmp, gif, webp and tif files")
        classes = st.text_input("Classes, in key order (comma-separated)", placeholder="sparrow, robin, crow",
                                help="the number keys 1-9 (then 0) pick them in this order; editable later")
        a, b = st.columns(2)
        size = a.selectbox("Model image size (px)", IMAGE_SIZES, help="images are cropped to a square and "
                                                                      "resized to this for training")
        gold = b.checkbox("Subfolder names are the true classes (hidden; for evaluation and the Demo page)")
        submitted = st.form_submit_button("Create project", type="primary")
    if not submitted:
        return
    slot = st.empty()  # the scan's bar, cleared when it ends in an error (no stale "Scanning..." above it)
    try:
        root = workspace.new_project_path(name)
        if is_project(root):
            raise BadInput(f"a project named {name.strip()!r} exists already in {root.parent}; "
                           "open it above or pick another name")
        if typed_path(images) is None:
            raise BadInput("give the image folder: the path of a folder of images on this machine")
        bar = slot.progress(0.0, text="Scanning...")

        def progress(event: Event) -> None:
            bar.progress(event.fraction if event.total else 1.0, text=event.describe(sentence=True))

        _, report, _ = init_project(root, typed_path(images), parse_classes(classes), size,
                                          gold_from_folders=gold, progress=progress)
    except VaalError as err:
        slot.empty()
        show_error(err)
        return
    st.session_state["ingest_report"] = {"project": str(root), **report.to_dict()}
    switch_to(root)


def ingest_summary() -> None:
    report = st.session_state.get("ingest_report")
    if not report or project is None or Path(report["project"]).resolve() != project.root.resolve():
        return
    hidden = f"; {hidden_words(report['hidden'])}" if report.get("hidden") else ""
    st.success(f"Created: {report['added']:,} images added, {len(report['skipped']):,} files skipped{hidden} "
               f"({report['images_per_s']:,.0f} images/s).", icon=":material/check_circle:")
    if report["skipped"]:
        st.dataframe(report["skipped"], hide_index=True, width="stretch")


# -- the open project ------------------------------------------------------------

def overview() -> None:
    status = project.status(team=False)
    st.caption(f"Images from {plain(status['image_root'])} · model size {status['image_size']} px · "
               f"folder {plain(project.root)}")
    problem = image_root_problem(project)
    if problem:
        st.warning(plain(problem), icon=":material/folder_off:")
        move_form("move_from_warning")
    done = st.session_state.pop("images_scanned", None)
    if done:
        st.success(plain(done), icon=":material/check_circle:")
    cols = st.columns(5)
    for col, key in zip(cols, ("items", "labeled", "unlabeled", "skipped", "missing")):
        col.metric(key.capitalize(), f"{status[key]:,}")
    per_class = status["per_class"]
    if not per_class:
        st.info("No classes yet: add them in the Classes tab below, in the order of the number keys.")
    elif not status["labeled"]:
        st.caption("No labels yet: the Label page is where to start.")
    else:
        fig = go.Figure(go.Bar(x=list(per_class.values()), y=[chart_text(c) for c in per_class], orientation="h"))
        fig.update_layout(height=max(160, 28 * len(per_class)), margin={"t": 10, "b": 10, "l": 10, "r": 10},
                          yaxis={"autorange": "reversed"},
                          # a tick per label while counts are small: "d" alone writes 0, 0, 0, 1, 1, 1 under 0-1
                          xaxis={"title": "labeled images", "rangemode": "tozero", "tickformat": "d",
                                 **({"dtick": 1} if max(per_class.values()) <= 10 else {})})
        st.plotly_chart(fig, key="per_class")
    skipped = project.skipped_files()
    if skipped:
        with st.expander(f"{len(skipped):,} files were skipped: why"):
            st.dataframe(skipped, hide_index=True, width="stretch")


def images_section() -> None:
    st.caption(f"Read from {plain(project.image_root)}. New files in that folder join the project when it is "
               "scanned again; files that left it are marked missing, their labels kept.")
    if st.button("Look for new images in the folder", icon=":material/refresh:", key="rescan",
                 disabled=image_root_problem(project) is not None):
        scan_images(project.image_root, moved=False)
    move_form("move_from_tab")


def move_form(key: str) -> None:
    """The images moved (another disk, a renamed folder): where they are now."""
    with st.form(key):
        where = st.text_input("The images moved? Where the folder is now", placeholder="/mnt/disk/photos/birds",
                              help="checked before it is used: every image at its path with its size, a sample "
                                   "of them byte for byte; labels, rounds and the queue are kept",
                              key=f"{key}_where")
        submitted = st.form_submit_button("Read the images from there", icon=":material/drive_file_move:",
                                          key=f"{key}_go")
    if submitted and typed_path(where):
        scan_images(typed_path(where), moved=True)


def scan_images(folder: Path, moved: bool) -> None:
    """Scan `folder` for the open project (after checking that its images
    moved there, if `moved`), with a bar; says what it found after the rerun."""
    slot = st.empty()
    bar = slot.progress(0.0, text="Scanning...")

    def progress(event: Event) -> None:
        bar.progress(event.fraction if event.total else 1.0, text=event.describe(sentence=True))

    try:
        scanned, report, _ = init_project(project.root, folder, progress=progress, moved=moved)
        scanned.close()  # its own connection to the store the page reads
    except VaalError as err:
        slot.empty()
        show_error(err)
        return
    said = [Moved(**report.moved).sentence(capital=True) + "."] if report.moved else []
    said.append(f"Scanned: {count(report.added, 'new image')} added, {report.missing:,} missing, "
                f"{count(len(report.skipped), 'file')} skipped" + "".join(f"; {n}" for n in report.notes()) + ".")
    st.session_state["images_scanned"] = " ".join(said)
    st.rerun()


def classes_section() -> None:
    classes = project.classes()
    counts = project.status(team=False)["per_class"]
    keys = label_words.class_keys(classes)
    for i, name in enumerate(classes):
        c_key, c_name, c_up, c_down, c_del = st.columns([1, 6, 1, 1, 1], vertical_alignment="bottom")
        c_key.markdown(f"`{keys[i] or '-'}`")
        new = c_name.text_input(f"Class {i + 1}", value=name, key=f"cls_name_{i}_{name}",
                                label_visibility="collapsed", help=f"{counts.get(name, 0):,} labeled")
        if new.strip() != name:
            try:
                project.rename_class(name, new)
            except VaalError as err:
                show_error(err)
            else:
                st.rerun()
        if c_up.button("↑", key=f"up_{i}", disabled=i == 0, help="move up (its number key changes)"):
            order = classes[:]
            order[i - 1], order[i] = order[i], order[i - 1]
            project.reorder_classes(order)
            st.rerun()
        if c_down.button("↓", key=f"down_{i}", disabled=i == len(classes) - 1):
            order = classes[:]
            order[i + 1], order[i] = order[i], order[i + 1]
            project.reorder_classes(order)
            st.rerun()
        if c_del.button("✕", key=f"del_{i}", help="remove (only classes never used can be removed)"):
            try:
                project.remove_class(name)
            except VaalError as err:
                show_error(err)
            else:
                st.rerun()
    with st.form("add_classes", clear_on_submit=True):
        text = st.text_input("Add classes (comma-separated)")
        if st.form_submit_button("Add") and text.strip():
            try:
                added = project.add_classes(parse_classes(text))
            except VaalError as err:
                show_error(err)
            else:
                st.toast(f"Added {len(added)} classes")
                st.rerun()


def defaults_section() -> None:
    settings = project.settings()
    names = samplers.names()
    with st.form("defaults"):
        a, b = st.columns(2)
        saved = settings.get("sampler", samplers.DEFAULT)
        sampler = a.selectbox("Default sampler", names,
                              index=names.index(saved if saved in names else samplers.DEFAULT))
        budget = b.number_input("Default budget", min_value=1,
                                value=int(settings.get("budget") or default_budget(project.item_count()[0] or 1)))
        fast = st.toggle("Quick models (small, for CPUs)", value=settings.get("fast", True))
        if st.form_submit_button("Save defaults"):
            project.save_settings(sampler=sampler, budget=int(budget), fast=fast)
            st.toast("Saved: the Train page starts from these")


def import_section() -> None:
    """Labels from a file (a CSV or the JSON export): checked whole and
    previewed before anything is written; one undoable action."""
    up = st.file_uploader("Import labels: a CSV file with the columns path,label, or a JSON export",
                          type=["csv", "json"], key="import_file",
                          help=f"paths relative to {plain(project.image_root)}; every row is checked before "
                               "anything is written")
    if up is None:
        return
    done = st.session_state.get("imported")
    if done and done["file"] == (str(project.root), up.file_id):  # this file went in: say so, offer to take it back
        a, b = st.columns([3, 1], vertical_alignment="center")
        a.success(plain(done["said"]), icon=":material/check_circle:")
        if b.button("Undo this import", icon=":material/undo:", key="undo_import"):
            undone = project.undo(only=done["action"], author=AUTHOR) if done["action"] is not None else None
            if undone is None:
                st.warning("Not undone: labels were given after the import; undo those first (Z on the Label page).")
            else:
                st.session_state.pop("imported")
                st.toast(f"Import undone: {len(undone['items']):,} labels back as they were")
                st.rerun()
        return
    try:
        rows = labels_io.parse_labels(up.getvalue(), up.name, "json" if up.name.lower().endswith(".json") else "csv")
        plan = labels_io.plan_import(project, rows, up.name, add_classes=True)  # the new classes are asked below
    except VaalError as err:
        show_error(err)
        return
    # The import writes what the preview on screen said: the labels as this file's last preview read them
    # (a label given elsewhere since then is refused by name, not overwritten), so keep each preview's reading.
    shown = st.session_state.get("import_shown")
    st.session_state["import_shown"] = ((str(project.root), up.file_id), plan.current)
    if shown and shown[0] == (str(project.root), up.file_id):
        plan = replace_plan(plan, current=shown[1])  # the next run shows the labels as they are by then
    refused = st.session_state.pop("import_refused", None)
    if refused:
        st.error(refused, icon=":material/error:")
    new, changed = plan.new, plan.changed
    st.markdown(f"**{plain(up.name)}**: {count(plan.rows, 'row')} · {count(len(new), 'image')} not labeled yet · "
                f"{len(changed):,} labeled otherwise now · {plan.unchanged:,} already so")
    replace = False
    if changed:
        names = {i: project.item(i) for i in changed[:5]}
        st.caption("Labeled otherwise now: " + "; ".join(
            f"{plain(shown_path(names[i].path, names[i].gold))}: {plain(plan.current[i])} → {plain(plan.labels[i])}"
            for i in changed[:5]) + (" …" if len(changed) > 5 else ""))
        replace = st.checkbox(f"Replace the {count(len(changed), 'label')} given before with the file's",
                              key="import_replace")
    adding = True  # the Import button waits for a yes when the file brings classes
    if plan.new_classes:
        many = len(plan.new_classes) > 1
        st.warning(f"{plain(up.name)} names {len(plan.new_classes):,} class{'es' if many else ''} this project "
                   f"lacks: {', '.join(plain(c) for c in plan.new_classes)}.", icon=":material/warning:")
        adding = st.checkbox(f"Add {'them' if many else 'it'} after the project's classes (undoing the import "
                             f"keeps {'them' if many else 'it'})", key="import_add_classes")
    n = len(new) + (len(changed) if replace else 0)
    if st.button(f"Import {count(n, 'label')}", type="primary", disabled=n == 0 or not adding,
                 icon=":material/upload:", key="import_go"):
        try:
            wrote = labels_io.apply_import(project, plan, AUTHOR, replace=replace)
        except LabelConflict as err:
            st.session_state["import_refused"] = (f"Nothing imported: {conflict_text(project, err)} The preview "
                                                  "below counts it now; import again if the file should win.")
            st.rerun()
        except VaalError as err:
            show_error(err)
            return
        action = project.latest_action(AUTHOR) if wrote else None  # no write, no action of its own to undo
        st.session_state["imported"] = {"file": (str(project.root), up.file_id), "action": action,
                                        "said": f"Imported {count(wrote, 'label')} from {up.name}." + (
                                            f" Added the classes {', '.join(plan.new_classes)}."
                                            if plan.new_classes else "")}
        st.rerun()


def export_section() -> None:
    n = project.status(team=False)["labeled"]
    st.caption(f"{n:,} labeled images. Paths are relative to {plain(project.image_root)}.")
    a, b = st.columns(2)
    # Callables: the file is made when the button is clicked, not on every run.
    a.download_button("Download CSV", lambda: labels_text(project, "csv"), file_name=f"{project.root.name}-labels.csv",
                      mime="text/csv", icon=":material/download:", disabled=n == 0)
    b.download_button("Download JSON", lambda: labels_text(project, "json"), file_name=f"{project.root.name}-labels.json",
                      mime="application/json", icon=":material/download:", disabled=n == 0)
    with st.form("imagefolder"):
        out = st.text_input("Write an ImageFolder copy (one subfolder per class) to",
                            value=str(workspace.home() / "exports" / f"{project.root.name}-imagefolder"))
        if st.form_submit_button("Write copy", disabled=n == 0):
            try:
                if typed_path(out) is None:
                    raise BadInput("give the folder to write the ImageFolder copy in")
                result = export_labels(project, "imagefolder", typed_path(out))
            except (VaalError, OSError) as err:
                show_error(err)
                return
            st.success(f"Copied {result['labels']:,} images to {plain(result['out'])}")
            if result["not_copied"]:
                st.warning(f"{len(result['not_copied'])} could not be copied")
                st.dataframe(result["not_copied"], hide_index=True)


ingest_summary()
if project is not None:
    st.subheader(plain(project.root.name))
    overview()
    tabs = st.tabs(["Classes", "Images", "Defaults", "Team", "Import / export", "Open another", "New project"])
    with tabs[0]:
        classes_section()
    with tabs[1]:
        images_section()
    with tabs[2]:
        defaults_section()
    with tabs[3]:
        team_section(project)
    with tabs[4]:
        import_section()
        export_section()
    with tabs[5]:
        open_section()
    with tabs[6]:
        create_section()
else:
    a, b = st.tabs(["Open", "New project"])
    with a:
        open_section()
    with b:
        create_section()
