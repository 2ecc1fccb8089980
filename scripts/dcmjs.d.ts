// dcmjs ships JavaScript without declarations: the part make-dicom-fixtures.ts uses to write DICOM files.
declare module 'dcmjs' {
  interface DicomDict {
    dict: Record<string, unknown>;
    write(options?: { fragmentMultiframe?: boolean }): ArrayBuffer;
  }
  const dcmjs: {
    data: {
      DicomDict: new (meta: Record<string, unknown>) => DicomDict;
      DicomMetaDictionary: { denaturalizeDataset(dataset: Record<string, unknown>): Record<string, unknown> };
    };
  };
  export default dcmjs;
}
