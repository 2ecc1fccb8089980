// Results as FHIR R4 resources, for an electronic health record: per photograph one DiagnosticReport with one
// Observation per class, and the model as the Device that made them. Plain JSON objects: the shapes are small and a
// FHIR client library would add nothing but weight.
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { sopClassName } from '../data/dicom.js';
import { isUngradable, type PhotoRecord } from '../models/records.js';
import type { ModelIdentity } from './output.js';

export const FHIR_JSON = 'application/fhir+json';

/** Marks a Bundle that fundus wrote (Bundle.meta.tag), so that `predict --out` may replace it. */
export const FUNDUS_BUNDLE_TAG = { system: 'urn:fundus', code: 'fundus-predictions' } as const;

/** The model behind the results: its identity (the predictions header's) and its classes and thresholds. */
export interface FhirModel {
  identity: ModelIdentity;
  classes: readonly string[];
  thresholds: readonly number[];
}

type Json = Record<string, unknown>;

const OBSERVATION_CATEGORY = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'imaging', display: 'Imaging' }] };
const INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
const DATA_ABSENT = 'http://terminology.hl7.org/CodeSystem/data-absent-reason';
const SNOMED = 'http://snomed.info/sct';
/** The eye photographed (DICOM laterality) as SNOMED CT body structures. */
const EYE: Record<string, Json> = {
  R: { coding: [{ system: SNOMED, code: '18944008', display: 'Right eye structure' }], text: 'right eye' },
  L: { coding: [{ system: SNOMED, code: '8966001', display: 'Left eye structure' }], text: 'left eye' },
};
const DICOM_UID = 'urn:dicom:uid';
/** The code system of the model's class names (they are the model's own labels, not a standard terminology). */
const CLASS_SYSTEM = 'urn:fundus:class';

const ref = (uuid: string) => ({ reference: `urn:uuid:${uuid}` });
const dicomUid = (type: string, uid: string, display?: string) => ({ type, identifier: { system: DICOM_UID, value: `urn:oid:${uid}` }, ...(display ? { display } : {}) });

function deviceResource(model: FhirModel): Json {
  const name = basename(model.identity.dir) || 'fundus model';
  return {
    resourceType: 'Device',
    identifier: [{ system: 'urn:fundus:model:fundus-json-sha256', value: model.identity.fundusJsonSha256 }],
    status: 'active',
    manufacturer: 'fundus',
    deviceName: [{ name, type: 'model-name' }],
    type: { text: 'Software: fundus photograph classification model' },
    version: [{ type: { text: 'fundus.json sha256' }, value: model.identity.fundusJsonSha256 }],
  };
}

/** The subject, only when the caller asked for identifiers (`--show-identifiers`) and the photograph carries them. */
function subjectOf(rec: PhotoRecord): Json | undefined {
  const p = rec.dicom?.patient;
  if (!p || (!p.patientId && !p.patientName)) return undefined;
  return { type: 'Patient', ...(p.patientId ? { identifier: { value: p.patientId } } : {}), ...(p.patientName ? { display: p.patientName } : {}) };
}

/**
 * One photograph's report: the DiagnosticReport and its Observations (full URLs and resources). The photograph is
 * named by its SOP Instance UID when it is a DICOM one, else by its file name.
 */
function reportEntries(rec: PhotoRecord, model: FhirModel, device: string, issued: string): { fullUrl: string; resource: Json }[] {
  const d = rec.dicom;
  const photoName = d?.sopInstanceUid ? `SOP Instance ${d.sopInstanceUid}${d.frame ? ` frame ${d.frame}` : ''}` : basename(rec.file ?? 'photograph');
  const subject = subjectOf(rec);
  const common: Json = {
    status: 'preliminary', // a model's output, not yet reviewed by a clinician
    ...(subject ? { subject } : {}),
    ...(d?.acquisitionDate ? { effectiveDateTime: d.acquisitionDate } : {}),
    issued,
  };
  const method = { text: `fundus model ${basename(model.identity.dir)} (fundus.json sha256 ${model.identity.fundusJsonSha256})` };
  const bodySite = d?.laterality && EYE[d.laterality] ? { bodySite: EYE[d.laterality] } : {};
  const derivedFrom = d?.sopInstanceUid ? { derivedFrom: [dicomUid('Media', d.sopInstanceUid, sopClassName(d.sopClassUid))] } : {};
  const entries: { fullUrl: string; resource: Json }[] = [];
  const observation = (resource: Json) => {
    const id = randomUUID();
    entries.push({ fullUrl: `urn:uuid:${id}`, resource: { resourceType: 'Observation', id, ...resource } });
    return id;
  };
  const results: string[] = [];
  const ungradable = isUngradable(rec);
  if (ungradable || rec.gradable) {
    results.push(
      observation({
        ...common,
        category: [OBSERVATION_CATEGORY],
        code: { coding: [{ system: CLASS_SYSTEM, code: 'gradability', display: 'Image gradability' }], text: 'Image gradability (fundus gradability gate)' },
        ...bodySite,
        valueCodeableConcept: { text: ungradable ? 'ungradable' : 'gradable' },
        ...(ungradable ? { note: [{ text: rec.ungradable.message }] } : {}),
        method,
        device: ref(device),
        ...derivedFrom,
      }),
    );
  }
  model.classes.forEach((cls, j) => {
    const threshold = model.thresholds[j];
    const value = ungradable
      ? { dataAbsentReason: { coding: [{ system: DATA_ABSENT, code: 'not-performed', display: 'Not Performed' }], text: `ungradable: ${rec.ungradable.message}` } }
      : {
          valueQuantity: { value: rec.probabilities[cls], unit: 'probability', system: 'http://unitsofmeasure.org', code: '1' },
          interpretation: [
            rec.decisions[cls]
              ? { coding: [{ system: INTERPRETATION, code: 'POS', display: 'Positive' }], text: `${cls}: at or above the model's threshold ${threshold}` }
              : { coding: [{ system: INTERPRETATION, code: 'NEG', display: 'Negative' }], text: `${cls}: below the model's threshold ${threshold}` },
          ],
        };
    results.push(
      observation({
        ...common,
        category: [OBSERVATION_CATEGORY],
        code: { coding: [{ system: CLASS_SYSTEM, code: cls, display: cls }], text: `Probability of ${cls} (fundus model)` },
        ...bodySite,
        ...value,
        // The decision threshold, so that the decision can be checked against the probability.
        referenceRange: [{ high: { value: threshold, unit: 'probability', system: 'http://unitsofmeasure.org', code: '1' }, text: `decision threshold ${threshold}` }],
        method,
        device: ref(device),
        ...derivedFrom,
      }),
    );
  });
  const reportId = randomUUID();
  const conclusion = ungradable
    ? `Ungradable: ${rec.ungradable.message}. No diagnosis is made.`
    : rec.positive.length
      ? `Above the model's threshold: ${rec.positive.join(', ')}.`
      : `No class above the model's threshold.`;
  const report: Json = {
    resourceType: 'DiagnosticReport',
    id: reportId,
    ...(d?.sopInstanceUid ? { identifier: [{ system: DICOM_UID, value: `urn:oid:${d.sopInstanceUid}${d.frame ? `#frame-${d.frame}` : ''}` }] } : {}),
    ...common,
    code: { text: 'Fundus photograph: automated analysis by the fundus model' },
    ...(d?.studyInstanceUid ? { imagingStudy: [dicomUid('ImagingStudy', d.studyInstanceUid)] } : {}),
    performer: [{ ...ref(device), type: 'Device' }],
    result: results.map(ref),
    media: [{ comment: photoName, link: d?.sopInstanceUid ? dicomUid('Media', d.sopInstanceUid) : { display: photoName } }],
    conclusion,
  };
  return [{ fullUrl: `urn:uuid:${reportId}`, resource: report }, ...entries];
}

/**
 * A FHIR R4 Bundle (type `collection`) of the records: the model as a Device, then per photograph a
 * DiagnosticReport (status `preliminary`) with one Observation per class: the probability as valueQuantity, the
 * decision at the model's threshold as interpretation (POS/NEG) with the threshold as reference range, the eye
 * (SNOMED CT) as bodySite, the acquisition date as effectiveDateTime, the model as device and method; an
 * "Image gradability" Observation where the gate ran, and for an ungradable photograph no probabilities
 * (dataAbsentReason `not-performed`) and the reasons.
 */
export function fhirBundle(records: readonly PhotoRecord[], model: FhirModel, now = new Date()): Json {
  const issued = now.toISOString();
  const device = randomUUID();
  const entry: { fullUrl: string; resource: Json }[] = [{ fullUrl: `urn:uuid:${device}`, resource: { ...deviceResource(model), id: device } }];
  for (const rec of records) entry.push(...reportEntries(rec, model, device, issued));
  return { resourceType: 'Bundle', id: randomUUID(), meta: { tag: [FUNDUS_BUNDLE_TAG] }, type: 'collection', timestamp: issued, entry };
}

/** Whether a parsed JSON document is a Bundle fundus wrote. */
export function isFundusBundle(doc: unknown): boolean {
  const tags = (doc as { resourceType?: unknown; meta?: { tag?: { system?: unknown; code?: unknown }[] } } | null)?.meta?.tag;
  return (doc as { resourceType?: unknown })?.resourceType === 'Bundle' && Array.isArray(tags) && tags.some((t) => t.system === FUNDUS_BUNDLE_TAG.system && t.code === FUNDUS_BUNDLE_TAG.code);
}
