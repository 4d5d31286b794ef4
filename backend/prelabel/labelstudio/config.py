"""Label Studio labeling configs: which controls prelabel fills, on which image, with which labels and prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.parsing import finite

# Control tag -> result type for the shapes we predict.
OUTPUT_TAGS = {"RectangleLabels": "rectanglelabels", "PolygonLabels": "polygonlabels", "BrushLabels": "brushlabels"}
# Video: tracks drawn on a <Video>, labelled by a <Labels> tag on the same video.
VIDEO_TAGS = {"VideoRectangle": "videorectangle"}
# Control tags whose smart-tool clicks/boxes arrive as interactive context.
CONTEXT_TAGS = {"KeyPointLabels": "keypointlabels", "RectangleLabels": "rectanglelabels"}
EXEMPLAR_PREFIX = "exemplar"


class LabelConfigError(PrelabelError):
    """A labeling config prelabel cannot predict for; the message tells the user what to change."""


@dataclass(frozen=True)
class Control:
    """One control tag of the config that prelabel fills: its name, type, image and labels."""

    name: str
    tag: str
    to_name: str
    labels: tuple[str, ...]

    @property
    def result_type(self) -> str:
        return OUTPUT_TAGS.get(self.tag) or VIDEO_TAGS[self.tag]


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a Label Studio labeling config that drive pre-annotation."""

    image_name: str
    image_key: str  # the task data key holding the image URL ("image" for value="$image")
    controls: tuple[Control, ...]
    prompts: tuple[LabelPrompt, ...]  # one per distinct label, in config order
    exemplar_controls: tuple[str, ...] = ()  # smart RectangleLabels named "exemplar...": "label one, find all"
    media: str = "image"  # "video" for a <Video> with <VideoRectangle> (image_name/image_key then name the video)
    framerate: float = 0.0  # the <Video framerate=...> (0: not given; the video file's own rate is used)

    @property
    def needs_masks(self) -> bool:
        return any(c.tag in ("PolygonLabels", "BrushLabels") for c in self.controls)

    @property
    def is_video(self) -> bool:
        return self.media == "video"


# --- writing configs: the one builder (label names escaped) ---------------------------------------------------
def image_config(labels: Sequence[str], *, polygons: bool = False, smart_keypoints: bool = False) -> str:
    """A labeling config for images: boxes of ``labels`` (control ``label``), polygons (``polygon``) when masks are
    predicted, and SAM's smart keypoints (``keypoint``) for clicks."""
    children = _label_tags(labels)
    controls = f'<RectangleLabels name="label" toName="image">{children}</RectangleLabels>'
    if polygons:
        controls += f'<PolygonLabels name="polygon" toName="image">{children}</PolygonLabels>'
    if smart_keypoints:
        controls += f'<KeyPointLabels name="keypoint" toName="image" smart="true">{children}</KeyPointLabels>'
    return f'<View><Image name="image" value="$image"/>{controls}</View>'


def video_config(labels: Sequence[str], fps: float = 25.0) -> str:
    """A labeling config for videos: tracked boxes (``VideoRectangle``) labelled by ``labels``."""
    return (f'<View>\n  <Labels name="videoLabels" toName="video" allowEmpty="true">{_label_tags(labels)}</Labels>\n'
            f'  <Video name="video" value="$video" framerate="{fps}"/>\n'
            f'  <VideoRectangle name="box" toName="video"/>\n</View>\n')


def _label_tags(labels: Sequence[str]) -> str:
    return "".join(f'<Label value="{escape(name)}"/>' for name in labels)


# --- reading configs ------------------------------------------------------------------------------------------
def parse_label_config(xml: str, prompt_map: Mapping[str, LabelPrompt] | None = None) -> LabelConfig:
    """Parse a config (safely: no entities, no external references) into what prelabel predicts.

    A label's prompts come from, in order: ``prompt_map`` (server config), the ``predicted_values``
    attribute of its ``<Label>`` (comma-separated, as in Label Studio's own examples), its value.
    """
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("the project has no labeling config")
    try:
        root = ElementTree.fromstring(xml)
    except Exception as exc:  # defusedxml raises ParseError and its own security errors
        raise LabelConfigError(f"the labeling config is not valid XML: {exc}") from exc
    prompt_map = prompt_map or {}
    if any(el.tag in VIDEO_TAGS for el in root.iter()):
        return _video_config(root, prompt_map)
    images = {el.get("name"): el.get("value", "") for el in root.iter("Image") if el.get("name")}
    if not images:
        raise LabelConfigError("the labeling config has no <Image> tag (or <Video> with <VideoRectangle>); "
                               "prelabel pre-labels images and videos")
    controls, prompts, exemplars = [], {}, []
    for el in root.iter():
        if el.tag not in OUTPUT_TAGS:
            continue
        if el.tag == "RectangleLabels" and is_exemplar_control(el.get("name", "")):
            exemplars.append(el.get("name", ""))
            continue
        to_name = el.get("toName", "")
        if to_name not in images:
            raise LabelConfigError(f"<{el.tag} name={el.get('name')!r}> points at {to_name!r}, which is not an <Image>")
        labels = tuple(_labels(el, prompt_map, prompts))
        if not labels:
            raise LabelConfigError(f"<{el.tag} name={el.get('name')!r}> has no <Label> children")
        controls.append(Control(el.get("name", ""), el.tag, to_name, labels))
    if not controls:
        raise LabelConfigError(
            "the labeling config has no RectangleLabels, PolygonLabels or BrushLabels tag on an <Image>; "
            "add one so prelabel can pre-annotate"
        )
    if len({c.to_name for c in controls}) > 1:
        raise LabelConfigError("prelabel supports one <Image> per task; the config's controls point at several")
    image_name = controls[0].to_name
    value = images[image_name]
    if not value.startswith("$"):
        raise LabelConfigError(f"<Image name={image_name!r}> must take its URL from task data, e.g. value=\"$image\"")
    return LabelConfig(image_name, value[1:], tuple(controls), tuple(prompts.values()), tuple(exemplars))


def is_exemplar_control(name: str) -> bool:
    """A RectangleLabels control named ``exemplar...`` takes exemplar boxes; prelabel never fills it."""
    return name.lower().startswith(EXEMPLAR_PREFIX)


def _video_config(root: Element, prompt_map: Mapping[str, LabelPrompt]) -> LabelConfig:
    """``<Video name value=$key framerate>`` + ``<VideoRectangle toName>`` + ``<Labels toName>`` on that video."""
    videos = {el.get("name"): el for el in root.iter("Video") if el.get("name")}
    rectangles = [el for el in root.iter() if el.tag in VIDEO_TAGS]
    for el in rectangles:
        if el.get("toName", "") not in videos:
            raise LabelConfigError(f"<{el.tag} name={el.get('name')!r}> points at {el.get('toName')!r}, which is not "
                                   f"a <Video>")
    if len({el.get("toName") for el in rectangles}) > 1:
        raise LabelConfigError("prelabel supports one <Video> per task; the VideoRectangle tags point at several")
    video_name = rectangles[0].get("toName", "")
    prompts: dict[str, LabelPrompt] = {}
    labels: list[str] = []
    for el in root.iter("Labels"):
        if el.get("toName") == video_name:
            labels += [name for name in _labels(el, prompt_map, prompts) if name not in labels]
    if not labels:
        raise LabelConfigError(f"the <Video name={video_name!r}> has no <Labels toName={video_name!r}> with <Label> "
                               f"children; add one so prelabel knows what to track")
    value = videos[video_name].get("value", "")
    if not value.startswith("$"):
        raise LabelConfigError(f"<Video name={video_name!r}> must take its URL from task data, e.g. value=\"$video\"")
    framerate = finite(videos[video_name].get("framerate") or 0)
    if framerate is None or framerate < 0:
        raise LabelConfigError(f"<Video framerate={videos[video_name].get('framerate')!r}> must be a positive number "
                               f"(frames per second, e.g. framerate=\"25\")")
    controls = tuple(Control(el.get("name", ""), el.tag, video_name, tuple(labels)) for el in rectangles)
    return LabelConfig(video_name, value[1:], controls, tuple(prompts.values()), media="video", framerate=framerate)


def _labels(el: Element, prompt_map: Mapping[str, LabelPrompt], prompts: dict[str, LabelPrompt]) -> list[str]:
    names = []
    for label in el.iter("Label"):
        name = label.get("value")
        if not name:
            continue
        names.append(name)
        if name not in prompts:
            predicted = [p for p in (label.get("predicted_values") or "").split(",") if p.strip()]
            prompts[name] = prompt_map.get(name) or LabelPrompt(name, tuple(predicted))
    return names
